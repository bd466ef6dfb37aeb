"""Deprecated: the resource side moved to :mod:`delegation_idp.resource_server`.

``delegation_idp.contrib.drf``, ``.mcp``, ``.metadata``, ``.urls`` and ``.validation``
stay importable and warn; they will be removed in a later release.
"""
