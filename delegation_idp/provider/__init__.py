"""The provider role: django-oauth-toolkit's hooks, the endpoints and client authentication.

* hooks named in ``OAUTH2_PROVIDER``: :mod:`~.server` (``OAUTH2_SERVER_CLASS``),
  :mod:`~.validators` (``OAUTH2_VALIDATOR_CLASS``), :mod:`~.backends`
  (``OAUTH2_BACKEND_CLASS``) and :mod:`~.tokens` (``ACCESS_TOKEN_GENERATOR``);
* endpoints: :mod:`~.views` (token, introspection, revocation, authorization, discovery)
  behind :mod:`~.guard`, :mod:`~.registration` (RFC 7591), :mod:`~.health`;
* client and user authentication: :mod:`~.client_auth` (keyed-hash secrets, RFC 7523
  ``private_key_jwt``), :mod:`~.signin`, :mod:`~.throttling`;
* what the exchange reads: :mod:`~.keys` (the key set), :mod:`~.policy_store` (the stored
  delegation policy and its per-process cache, kept fresh by :mod:`~.policy_triggers`);
* :mod:`~.agents`: registering agents and the rest of their life (a new secret, enabled or
  not, finding one by any name); :mod:`~.dry_run`: the policy's answer to a hypothetical
  request (the admin's dry-run page, ``manage.py explain``); :mod:`~.resilience`: storage
  faults as JSON errors.
"""
