"""Token Status List (draft-ietf-oauth-status-list; implementers cite -21):
https://datatracker.ietf.org/doc/draft-ietf-oauth-status-list/

The pure part of the draft, used by the provider and the resource side alike (no Django here):

* :mod:`.bits`: the status byte array (section 4.1), compressed with ZLIB/DEFLATE and read back
  with bounded decompression (section 11.1: a list is untrusted input until verified, and a
  small compressed list can expand without limit);
* :mod:`.claims`: the ``status`` claim of a referenced token (section 6.2) and the claims of a
  Status List Token in JWT form (section 5.1), built and checked;
* :mod:`.indices`: a keyed permutation of a list's indices, so that tokens issued one after
  another get unrelated indices (sections 12.4 and 12.5).
"""

from delegation_idp.statuslist.bits import (
    INVALID,
    VALID,
    StatusListError,
    compress,
    decode,
    encode,
    status_at,
)
from delegation_idp.statuslist.claims import (
    AGGREGATION_METADATA,
    MEDIA_TYPE,
    TYP,
    Reference,
    list_token_claims,
    reference_claim,
    reference_of,
    validate_list_claims,
)
from delegation_idp.statuslist.indices import Permutation

__all__ = [
    "AGGREGATION_METADATA",
    "INVALID",
    "MEDIA_TYPE",
    "TYP",
    "VALID",
    "Permutation",
    "Reference",
    "StatusListError",
    "compress",
    "decode",
    "encode",
    "list_token_claims",
    "reference_claim",
    "reference_of",
    "status_at",
    "validate_list_claims",
]
