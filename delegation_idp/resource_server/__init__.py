"""The receiving side: services that accept the provider's delegation tokens.

Importable without the provider's models, so a resource server (or an MCP
server) that is not the identity site can use it:

* :mod:`.validation`: local validation of RFC 9068 JWT access tokens against the
  provider's published keys, how they were presented (bearer, or DPoP-bound with a proof
  of their key, RFC 9449), the revocation check (Redis, or RFC 7662 introspection), and
  :class:`.validation.DelegatedToken`, the typed result;
* :mod:`.dpop`: the ``Bearer`` and ``DPoP`` authentication schemes: reading the
  ``Authorization`` header, the ``WWW-Authenticate`` challenges;
* :mod:`.drf`: Django REST framework authentication and permission classes, validating
  with :mod:`.site`'s validator, built from the Django settings;
* :mod:`.metadata`: the RFC 9728 protected-resource metadata view, and the URLs the site
  names itself by;
* :mod:`.mcp`: a token verifier for the official ``mcp`` SDK, and the ASGI middleware that
  lets it take DPoP-bound tokens.
"""
