"""The pure core: decisions without I/O.

Only the standard library, no Django, no database, ``now`` always an input:

* :mod:`~delegation_idp.core.policy`: delegation policy evaluation and scope narrowing;
* :mod:`~delegation_idp.core.actchain`: the nested ``act`` claim of RFC 8693 section 4.1;
* :mod:`~delegation_idp.core.reasons`: the catalogue of every refusal and its OAuth error.
"""
