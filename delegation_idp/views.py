"""Deprecated: moved to :mod:`delegation_idp.provider.views`.

The old dotted path stays importable (URL confs name it) and warns once per process; it
will be removed in a later release.
"""

from typing import Any

from delegation_idp._shims import moved

_target = moved(__name__, "delegation_idp.provider.views")


def __getattr__(name: str) -> Any:
    return getattr(_target, name)
