"""The agent client asks for the user's approval and polls (OpenID CIBA Core 1.0, poll mode),
sync and async, against the real provider in-process: the ``interval`` honoured, five seconds
more after ``slow_down``, the typed errors of a denial, an expiry and the caller's timeout.

No test sleeps: the client's ``sleep`` and ``clock`` are a :class:`FakeTime`, whose sleep
also plays what happens meanwhile (the user deciding, the provider's interval passing)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from delegation_idp.ciba import approvals
from delegation_idp.client import (
    AccessDenied,
    AgentClient,
    ApprovalTimeout,
    AsyncAgentClient,
    BackchannelAuthentication,
    ExpiredToken,
    InvalidGrant,
    SlowDown,
)
from delegation_idp.client.ciba import Schedule, acknowledgement, backchannel_form
from delegation_idp.client.errors import AuthorizationPending, OAuthError
from delegation_idp.models import ApprovalRequest, DelegationRule, TokenLineage
from tests.helpers import decode

pytestmark = pytest.mark.django_db

PAYMENT = {
    "type": "payment_initiation",
    "actions": ["initiate"],
    "instructedAmount": {"currency": "EUR", "amount": "123.50"},
    "creditorName": "Merchant A",
}
MESSAGE = "Pay Merchant A 123.50 EUR"


class FakeTime:
    """The client's clock and sleep: a sleep moves the clock on at once, records the wait, and
    runs ``meanwhile(number_of_the_sleep)``: what the world does while the client waits."""

    def __init__(self, meanwhile: Callable[[int], None] = lambda n: None) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        self.meanwhile = meanwhile

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        self.meanwhile(len(self.waits))


@pytest.fixture
def approval_rule(cast: Any) -> DelegationRule:
    """agent1's seeded rule toward agent2 needs the user's approval, every time."""
    rule = DelegationRule.objects.get(actor__uri=cast["agent1"].uri, audiences__uri=cast["agent2"].uri)
    rule.approval, rule.approval_reuse_seconds = DelegationRule.APPROVAL_ALWAYS, 0
    rule.save()
    return rule


@pytest.fixture
def agent1(cast: Any, provider: Any, approval_rule: Any) -> Callable[..., AgentClient]:
    def make(time: FakeTime, **options: Any) -> AgentClient:
        agent = cast["agent1"]
        client = AgentClient(
            "http://testserver",
            agent.client_id,
            agent.client_secret,
            http=httpx.Client(transport=provider),
            **options,
        )
        client.sleep, client.clock = time.sleep, time.clock
        return client

    return make


def interval_passed() -> None:
    """The provider's interval is over (its clock is real, the client's is not)."""
    ApprovalRequest.objects.update(polled_at=None)


def user_decides(cast: Any, *, approve: bool, on: int = 1) -> Callable[[int], None]:
    """While the client sleeps for the ``on``-th time, the user decides; every wait lasts the interval."""

    def meanwhile(sleep: int) -> None:
        if sleep == on:
            approval = approvals.pending_for(cast.user)[0]  # the newest
            assert approvals.decide(approval.pk, cast.user, approve=approve) is not None
        interval_passed()

    return meanwhile


def ask(agent: AgentClient, user_token: str, cast: Any, **extra: Any) -> BackchannelAuthentication:
    return agent.ask_approval(
        user_token,
        audience=cast["agent2"].uri,
        binding_message=MESSAGE,
        authorization_details=[PAYMENT],
        **extra,
    )


@pytest.mark.rfc("ciba-7.3")
def test_ask_then_pending_then_approved_the_token_with_act_and_authorization_details(
    agent1: Any, user_token: str, cast: Any, provider: Any
) -> None:
    time = FakeTime(user_decides(cast, approve=True))
    agent = agent1(time)
    auth = ask(agent, user_token, cast)
    assert auth.interval == 5 and 0 < auth.expires_in <= 300
    assert auth.expires_at == time.now + auth.expires_in and auth.jkt is None
    assert auth.auth_req_id not in repr(auth) and auth.auth_req_id[4:12] not in repr(auth)
    stored = ApprovalRequest.objects.get()
    assert stored.binding_message == MESSAGE and stored.authorization_details == [PAYMENT]
    assert stored.chain == [cast["agent1"].uri] and stored.audience == [cast["agent2"].uri]

    result = agent.wait_for_approval(auth)
    assert time.waits == [5]  # pending at once, the user approved during the interval
    assert provider.count("/o/bc-authorize/") == 1 and provider.count("/o/token/") == 2  # two polls
    assert result.token_type == "Bearer" and result.authorization_details == (PAYMENT,)
    assert result.access_token not in repr(result)
    claims = decode(result.access_token)[1]
    assert claims["act"] == {"sub": cast["agent1"].uri} and claims["aud"] == cast["agent2"].uri
    assert claims["authorization_details"] == [PAYMENT]
    assert TokenLineage.objects.get(jti=claims["jti"]).approval_id == stored.pk
    with pytest.raises(InvalidGrant):  # issued once: the auth_req_id is spent
        interval_passed()
        agent.poll(auth)


@pytest.mark.rfc("ciba-11")
def test_slow_down_makes_the_client_wait_five_seconds_longer(agent1: Any, user_token: str, cast: Any) -> None:
    def meanwhile(sleep: int) -> None:
        if sleep == 2:  # the first wait is not over for the provider: the second poll is early
            user_decides(cast, approve=True)(1)

    time = FakeTime(meanwhile)
    agent = agent1(time)
    result = agent.wait_for_approval(ask(agent, user_token, cast))
    assert time.waits == [5, 10]
    assert ApprovalRequest.objects.get().interval == 10  # the provider's interval grew as well
    assert result.authorization_details == (PAYMENT,)


@pytest.mark.rfc("ciba-11")
def test_one_poll_answers_pending_then_slow_down(agent1: Any, user_token: str, cast: Any) -> None:
    agent = agent1(FakeTime())
    auth = ask(agent, user_token, cast)
    with pytest.raises(AuthorizationPending) as pending:
        agent.poll(auth)
    assert pending.value.error == "authorization_pending" and pending.value.status == 400
    with pytest.raises(SlowDown):
        agent.poll(auth)


@pytest.mark.rfc("ciba-11")
def test_a_denial_raises_access_denied(agent1: Any, user_token: str, cast: Any) -> None:
    time = FakeTime(user_decides(cast, approve=False))
    agent = agent1(time)
    with pytest.raises(AccessDenied) as denied:
        agent.wait_for_approval(ask(agent, user_token, cast))
    assert denied.value.error == "access_denied" and denied.value.status == 400
    assert time.waits == [5]
    assert ApprovalRequest.objects.get().status == ApprovalRequest.DENIED


@pytest.mark.rfc("ciba-11")
def test_a_request_the_provider_expired_raises_expired_token(agent1: Any, user_token: str, cast: Any) -> None:
    def meanwhile(sleep: int) -> None:
        ApprovalRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1), polled_at=None)

    time = FakeTime(meanwhile)
    agent = agent1(time)
    with pytest.raises(ExpiredToken) as expired:
        agent.wait_for_approval(ask(agent, user_token, cast))
    assert expired.value.error == "expired_token" and expired.value.status == 400  # the provider's answer
    assert time.waits == [5]


def test_the_client_stops_when_the_next_poll_could_only_come_after_the_expiry(
    agent1: Any, user_token: str, cast: Any, provider: Any
) -> None:
    time = FakeTime(lambda n: interval_passed())
    agent = agent1(time)
    auth = ask(agent, user_token, cast, requested_expiry=12)
    assert auth.expires_in == 12
    with pytest.raises(ExpiredToken) as expired:
        agent.wait_for_approval(auth)
    assert expired.value.status == 0  # the client's own conclusion: polls at 0, 5 and 10; 15 is too late
    assert time.waits == [5, 5] and provider.count("/o/token/") == 3


def test_the_callers_timeout_raises_approval_timeout_and_the_request_stays(
    agent1: Any, user_token: str, cast: Any
) -> None:
    time = FakeTime(lambda n: interval_passed())
    agent = agent1(time)
    auth = ask(agent, user_token, cast)
    with pytest.raises(ApprovalTimeout) as timeout:
        agent.wait_for_approval(auth, timeout=7)
    assert isinstance(timeout.value, OAuthError) and timeout.value.error == "approval_timeout"
    assert time.waits == [5]
    assert ApprovalRequest.objects.get().status == ApprovalRequest.PENDING
    # The same request can still be waited for: the user approves, the next wait gets the token.
    time.meanwhile = user_decides(cast, approve=True)
    time.waits.clear()
    assert agent.wait_for_approval(auth, timeout=60).authorization_details == (PAYMENT,)


@pytest.mark.rfc("9449-5")
def test_with_dpop_the_same_key_proves_the_request_and_the_polls(
    agent1: Any, user_token: str, cast: Any, provider: Any
) -> None:
    time = FakeTime(user_decides(cast, approve=True))
    agent = agent1(time, dpop=True)
    auth = ask(agent, user_token, cast)
    assert agent.dpop_key is not None and auth.jkt == agent.dpop_key.jkt
    assert ApprovalRequest.objects.get().jkt == agent.dpop_key.jkt
    result = agent.wait_for_approval(auth)
    assert result.token_type == "DPoP" and result.jkt == agent.dpop_key.jkt
    assert decode(result.access_token)[1]["cnf"] == {"jkt": agent.dpop_key.jkt}
    other = agent1(FakeTime(), dpop=True)  # another key may not poll for it
    with pytest.raises(ValueError, match="another DPoP key"):
        other.poll(auth)


class MainThread:
    """Run a coroutine in a thread of its own while the test's thread serves what it hands
    back (the provider's views, the user's decision): Django's connection in an event loop
    is not the test's, whose transaction holds the seed."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Any] = queue.Queue()

    async def call(self, work: Callable[[], Any]) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.calls.put((work, done))
        return await asyncio.wrap_future(done)

    def run(self, coroutine: Callable[[], Any]) -> Any:
        outcome: dict[str, Any] = {}

        def loop() -> None:
            try:
                outcome["value"] = asyncio.run(coroutine())
            except BaseException as exc:  # re-raised in the test's thread
                outcome["error"] = exc
            finally:
                self.calls.put(None)

        thread = threading.Thread(target=loop)
        thread.start()
        while (item := self.calls.get(timeout=60)) is not None:
            work, done = item
            try:
                done.set_result(work())
            except BaseException as exc:
                done.set_exception(exc)
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


class AsyncProvider(httpx.AsyncBaseTransport):
    """The in-process provider (:class:`tests.conftest.DjangoTransport`) for ``httpx.AsyncClient``,
    its views run in the test's thread."""

    def __init__(self, inner: Any, main: MainThread) -> None:
        self.inner, self.main = inner, main

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await self.main.call(lambda: self.inner.handle_request(request))


@pytest.fixture
def main() -> MainThread:
    return MainThread()


@pytest.fixture
def async_agent1(cast: Any, provider: Any, approval_rule: Any, main: MainThread) -> Callable[..., Any]:
    def make(time: FakeTime, **options: Any) -> AsyncAgentClient:
        agent = cast["agent1"]
        http = httpx.AsyncClient(transport=AsyncProvider(provider, main))
        client = AsyncAgentClient(
            "http://testserver", agent.client_id, agent.client_secret, http=http, **options
        )

        async def sleep(seconds: float) -> None:
            await main.call(lambda: time.sleep(seconds))

        client.sleep, client.clock = sleep, time.clock
        return client

    return make


@pytest.mark.rfc("ciba-11")
def test_async_ask_slow_down_then_approved(
    async_agent1: Any, main: MainThread, user_token: str, cast: Any
) -> None:
    def meanwhile(sleep: int) -> None:
        if sleep == 2:
            user_decides(cast, approve=True)(1)

    time = FakeTime(meanwhile)

    async def run() -> Any:
        async with async_agent1(time, dpop=True) as agent:
            auth = await agent.ask_approval(
                user_token,
                audience=cast["agent2"].uri,
                binding_message=MESSAGE,
                authorization_details=json.dumps([PAYMENT]),  # the JSON text itself
            )
            assert auth.auth_req_id not in repr(auth)
            return agent, await agent.wait_for_approval(auth, timeout=60)

    agent, result = main.run(run)
    assert time.waits == [5, 10]
    assert result.token_type == "DPoP" and result.jkt == agent.dpop_key.jkt
    assert result.authorization_details == (PAYMENT,)
    assert decode(result.access_token)[1]["act"] == {"sub": cast["agent1"].uri}


def test_async_denial_and_timeout(async_agent1: Any, main: MainThread, user_token: str, cast: Any) -> None:
    async def run(time: FakeTime, timeout: float | None) -> None:
        async with async_agent1(time) as agent:
            auth = await agent.ask_approval(user_token, audience=cast["agent2"].uri, binding_message=MESSAGE)
            await agent.wait_for_approval(auth, timeout=timeout)

    with pytest.raises(ApprovalTimeout):
        main.run(lambda: run(FakeTime(lambda n: interval_passed()), 4))
    with pytest.raises(AccessDenied):
        main.run(lambda: run(FakeTime(user_decides(cast, approve=False)), None))


# -- the pure parts -----------------------------------------------------------------------


def test_the_backchannel_form_is_the_exchanges_without_grant_type_plus_cibas() -> None:
    exchange = [("grant_type", "x"), ("subject_token", "t"), ("audience", "https://a")]
    form = backchannel_form(
        exchange,
        binding_message=MESSAGE,
        authorization_details=[PAYMENT],
        login_hint="user@example.com",
        requested_expiry=60,
        requested_token_type="urn:ietf:params:oauth:token-type:access_token",
    )
    names = [name for name, _ in form]
    assert "grant_type" not in names and names[:2] == ["subject_token", "audience"]
    assert json.loads(dict(form)["authorization_details"]) == [PAYMENT]
    assert dict(form)["requested_expiry"] == "60" and dict(form)["login_hint"] == "user@example.com"
    assert backchannel_form(exchange) == exchange[1:]
    with pytest.raises(ValueError):
        backchannel_form(exchange, requested_expiry=0)


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in": 60},
        {"auth_req_id": "", "expires_in": 60},
        {"auth_req_id": "r", "expires_in": 0},
        {"auth_req_id": "r", "expires_in": True},
        {"auth_req_id": "r", "expires_in": 60, "interval": -1},
    ],
)
def test_a_malformed_acknowledgement_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(OAuthError) as refused:
        acknowledgement(body, 0.0, None)
    assert refused.value.error == "invalid_response"


def test_the_schedule_waits_the_interval_and_five_more_after_each_slow_down() -> None:
    auth = acknowledgement({"auth_req_id": "abcdefgh", "expires_in": 60}, 100.0, None)
    assert auth.interval == 5 and auth.expires_at == 160.0  # section 7.3: five seconds by default
    assert repr(auth) == "BackchannelAuthentication(auth_req_id='abcd…', expires_in=60, interval=5)"
    schedule = Schedule(auth, 100.0)
    pending, slow = AuthorizationPending("authorization_pending"), SlowDown("slow_down")
    assert [schedule.after(e, 100.0) for e in (pending, slow, pending, slow, pending)] == [5, 10, 10, 15, 15]
    with pytest.raises(ExpiredToken):
        schedule.after(pending, 145.0)  # 145 + 15 reaches the expiry
    denied = AccessDenied("access_denied")
    with pytest.raises(AccessDenied) as raised:
        Schedule(auth, 100.0).after(denied, 100.0)
    assert raised.value is denied
    with pytest.raises(ApprovalTimeout):
        Schedule(auth, 100.0, timeout=4).after(pending, 100.0)
