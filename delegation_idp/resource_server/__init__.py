"""The receiving side: services that accept the provider's delegation tokens.

Importable without the provider's models, so a resource server (or an MCP
server) that is not the identity site can use it:

* :mod:`.validation`: local validation of RFC 9068 JWT access tokens against the
  provider's published keys, the revocation check (Redis, or RFC 7662
  introspection), and :class:`.validation.DelegatedToken`, the typed result;
* :mod:`.drf`: Django REST framework authentication and permission classes;
* :mod:`.metadata`: the RFC 9728 protected-resource metadata view;
* :mod:`.mcp`: a token verifier for the official ``mcp`` SDK.
"""
