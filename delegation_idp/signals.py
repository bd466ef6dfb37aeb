"""Django signals for integrators.

* ``token_exchanged(sender, request, jti, parent_jti, claims)``: after a token exchange commits.
* ``exchange_denied(sender, request, reason, error, client_id)``: a token exchange was refused.
* ``token_revoked(sender, jtis, reason)``: tokens were revoked (a subtree, a user, a party, a key).
* ``signing_key_revoked(sender, kid, now)``: a signing key was revoked; lineage's receiver revokes
  every live token it signed and returns how many.
* ``approval_requested(sender, approval, url)``: an agent asked for the user's approval (OpenID
  CIBA); ``approval`` is the :class:`delegation_idp.models.ApprovalRequest` (its ``user`` is the
  one to notify), ``url`` the absolute URL of the approval page. Sent after the request is
  stored, whether or not the optional email went; a site notifies its users its own way here.
* ``approval_decided(sender, approval, approved, by)``: a user approved or denied a request
  (``by`` is the user), or an identical approval was reused (``by`` is None).
* ``request_audited(sender, record, seconds)``: a request of the token, introspection or revocation
  endpoint ended and its audit record was written; ``sender`` is
  :class:`delegation_idp.audit.Attempt`, ``record`` the request's (read it, never change it),
  ``seconds`` how long the request took. Sent once per request, robustly (a failing receiver
  is logged); the metrics count here (:mod:`delegation_idp.provider.metrics`).
"""

from django.dispatch import Signal

token_exchanged = Signal()
exchange_denied = Signal()
token_revoked = Signal()
signing_key_revoked = Signal()
approval_requested = Signal()
approval_decided = Signal()
# Sent at every request, always by the same sender: its receivers are looked up once, not per send.
request_audited = Signal(use_caching=True)
