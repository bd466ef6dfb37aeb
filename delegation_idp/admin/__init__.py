"""Django admin: one module per area, registered on import (Django autodiscovers this package)."""

from delegation_idp.admin import approvals, keys, lineage, parties, registration, trusted_issuers

__all__ = ["approvals", "keys", "lineage", "parties", "registration", "trusted_issuers"]
