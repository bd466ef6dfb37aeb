"""System checks of the Token Status List options (ids E030..E034, deploy W107 and W108)."""

from __future__ import annotations

import pytest

from delegation_idp import checks
from tests.helpers import with_idp


def ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_the_defaults_pass():
    assert not ids(checks.check_status_lists()) & {f"delegation_idp.E03{i}" for i in range(5)}


@pytest.mark.parametrize(
    ("options", "check_id"),
    [
        ({"STATUS_LIST_SIZE": 1000}, "E030"),
        ({"STATUS_LIST_SIZE": 1 << 25}, "E030"),
        ({"STATUS_LIST_BLOCK_SIZE": 100}, "E030"),
        ({"STATUS_LIST_SIZE": 1024, "STATUS_LIST_BLOCK_SIZE": 2048}, "E030"),
        ({"STATUS_LIST_PUBLISH_DELAY": 0}, "E031"),
        ({"STATUS_LIST_TTL": True}, "E031"),
        ({"STATUS_LIST_TOKEN_LIFETIME": 100, "STATUS_LIST_TTL": 60}, "E031"),
        ({"RESOURCE_REVOCATION_MODES": ["crl"]}, "E032"),
        ({"RESOURCE_REVOCATION_MODES": "status_list"}, "E032"),
        ({"RESOURCE_REVOCATION_MODES": []}, "E032"),
        ({"RESOURCE_STATUS_LIST_MAX_BYTES": 10**9}, "E033"),
        ({"RESOURCE_STATUS_LIST_MAX_DECOMPRESSED_BYTES": None}, "E033"),
        ({"RESOURCE_STATUS_LIST_STALE_SECONDS": -1}, "E033"),
        ({"RESOURCE_STATUS_LIST_URI_PREFIXES": "https://lists.example.com/"}, "E034"),
        ({"RESOURCE_STATUS_LIST_URI_PREFIXES": ["https://lists.example.com"]}, "E034"),
        ({"RESOURCE_STATUS_LIST_URI_PREFIXES": ["/statuslists/"]}, "E034"),
        ({"RESOURCE_STATUS_LIST_URI_PREFIXES": ["ftp://lists.example.com/"]}, "E034"),
        ({"RESOURCE_STATUS_LIST_URI_PREFIXES": ["https://lists.example.com/?a=1/"]}, "E034"),
    ],
)
def test_each_bad_option_is_an_error(options, check_id):
    with with_idp(**options):
        assert f"delegation_idp.{check_id}" in ids(checks.check_status_lists())


def test_status_lists_off_and_fail_open_are_deploy_warnings():
    with with_idp(STATUS_LIST=False, RESOURCE_STATUS_LIST_FAIL_OPEN=True):
        found = ids(checks._check_status_lists_deploy())
    assert found == {"delegation_idp.W107", "delegation_idp.W108"}
    assert not checks._check_status_lists_deploy()


def test_list_prefixes_of_the_right_shape_pass():
    prefixes = ["https://lists.example.com/statuslists/", "http://127.0.0.1:8000/o/statuslists/"]
    with with_idp(RESOURCE_STATUS_LIST_URI_PREFIXES=prefixes):
        assert "delegation_idp.E034" not in ids(checks.check_status_lists())
