"""Token lineage: where every issued token came from, and revocation that cascades.

Split by job:

* :mod:`~.issuance`: the lineage row of each issued token and the race-free re-check in
  its issuing transaction (every vendor-specific SQL statement of lineage lives there);
* :mod:`~.revocation`: revocation of a token's subtree, of a party's, a user's or a key's
  tokens, and of a replayed authorization code's;
* :mod:`~.queries`: read models (a token's tree, who acted for a user);
* :mod:`~.publication`: the Redis revocation set resource servers read;
* :mod:`~.retention`: the sweeps of expired tokens and of records past retention;
* :mod:`~.receivers`: the signal handlers that keep lineage in step with the site.
"""
