"""The user in the loop: OpenID Connect Client-Initiated Backchannel Authentication (CIBA
Core 1.0) in poll mode, for delegations whose rule needs the user's approval.

An agent that holds a token for a user asks, at the backchannel authentication endpoint,
for the next hop of its chain (the same parameters as a token exchange, RFC 8693, plus a
``binding_message`` and RFC 9396 ``authorization_details``). The provider applies the
exchange's policy, keeps the request, and answers ``auth_req_id``, ``expires_in`` and
``interval``. The user approves or denies on the provider's page, seeing the whole chain of
agents that asks; the agent polls the token endpoint with the CIBA grant and gets the token
the exchange would have issued, with the approved ``authorization_details``.

- :mod:`delegation_idp.ciba.request`: the two forms, parsed (pure);
- :mod:`delegation_idp.ciba.approvals`: the approval requests (open, reuse, decide, cancel);
- :mod:`delegation_idp.ciba.grant`: the oauthlib grant for both requests;
- :mod:`delegation_idp.ciba.views`: the backchannel authentication endpoint.
"""

GRANT_TYPE = "urn:openid:params:grant-type:ciba"
#: CIBA Core section 4: the token delivery modes offered (poll only: the agent asks again).
DELIVERY_MODES = ("poll",)
#: The audit events of a backchannel authentication request and of a poll.
REQUEST_EVENT = "backchannel_authentication"
POLL_EVENT = "backchannel_token"
#: The audit event of a user's decision on the approval page.
DECISION_EVENT = "approval_decision"

__all__ = ["DECISION_EVENT", "DELIVERY_MODES", "GRANT_TYPE", "POLL_EVENT", "REQUEST_EVENT"]
