"""The CIBA fixtures (tests/ciba/conftest.py) for the findings of review 21."""

from tests.ciba.conftest import approval_rule, asked, backchannel, decide, poll

__all__ = ["approval_rule", "asked", "backchannel", "decide", "poll"]
