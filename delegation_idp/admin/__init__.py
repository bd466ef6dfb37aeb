"""Django admin: one module per area, registered on import (Django autodiscovers this package)."""

from delegation_idp.admin import keys, lineage, parties, registration, trusted_issuers

__all__ = ["keys", "lineage", "parties", "registration", "trusted_issuers"]
