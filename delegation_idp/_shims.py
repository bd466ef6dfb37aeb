"""The old dotted paths of moved modules (django-oauth-toolkit keeps its own the same way)."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def moved(old: str, new: str) -> ModuleType:
    """Import ``new`` for the deprecated module ``old``, with a ``DeprecationWarning``."""
    warnings.warn(
        f"{old} is deprecated; use {new} (settings and imports naming {old} keep working for now).",
        DeprecationWarning,
        stacklevel=3,
    )
    return importlib.import_module(new)
