"""DPoP (RFC 9449): proof-of-possession tokens, for both sides of the wire.

* :mod:`~delegation_idp.rfc9449.proof`: checking one proof (section 4.3), pure but for the
  clock and the replay store it is handed;
* :mod:`~delegation_idp.rfc9449.nonce`: server-provided nonces (section 8), stateless, so
  every process of a deployment that shares the secret issues and accepts the same ones;
* :mod:`~delegation_idp.rfc9449.replay`: ``jti`` replay stores (section 11.1): a Django
  cache (Redis in production), a Redis client, or one process's memory.

The provider's token endpoint (:mod:`delegation_idp.provider.dpop`) and the resource side
(:mod:`delegation_idp.resource_server`) both build on these.
"""

from delegation_idp.rfc9449.nonce import NonceIssuer
from delegation_idp.rfc9449.proof import (
    ALGORITHMS,
    Proof,
    ProofError,
    ProofPolicy,
    check_proof,
    normalized_htu,
)
from delegation_idp.rfc9449.replay import (
    CacheReplayStore,
    MemoryReplayStore,
    RedisReplayStore,
    ReplayStore,
    ReplayStoreUnavailable,
)

__all__ = [
    "ALGORITHMS",
    "CacheReplayStore",
    "MemoryReplayStore",
    "NonceIssuer",
    "Proof",
    "ProofError",
    "ProofPolicy",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "check_proof",
    "normalized_htu",
]
