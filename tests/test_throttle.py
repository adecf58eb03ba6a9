"""Login throttling: the policy (buckets, waits for checks in flight, devices) on each counter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from doorman.accounts import slots as slots_module
from doorman.accounts.throttle import LoginThrottle, RegistrationThrottle
from doorman.db import create_engine
from doorman.exceptions import Abandoned, Busy, ConfigError, Throttled
from doorman.stores import BatchCounter, Counter, MemoryCounter, RedisCounter, SQLCounter

from . import test_counters
from .conftest import Clock
from .test_counters import redis_client, stored_keys

counter = test_counters.counter  # the fixtures: each kind of counter in turn
shared_counter = test_counters.shared_counter

pytestmark = pytest.mark.anyio


async def fail(
    throttle: LoginThrottle, username: str, address: str | None, times: int = 1, **options: Any
) -> None:
    """``times`` checks of a wrong password: each leaves its block without ``succeeded()``."""
    for _ in range(times):
        async with await throttle.attempt(username, address, **options):
            pass


async def succeed(
    throttle: LoginThrottle, username: str, address: str | None, **options: Any
) -> None:
    async with await throttle.attempt(username, address, **options) as attempt:
        attempt.succeeded()


@pytest.fixture
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sign-in waiting for a slot looks again every few milliseconds, not up to a second.

    The tests of many sign-ins at once are about who gets in and who is refused,
    which the pace of looking does not change; at the real pace they mostly wait.
    """
    monkeypatch.setattr(slots_module, "_FIRST_POLL", 0.002)
    monkeypatch.setattr(slots_module, "_LAST_POLL", 0.01)
    monkeypatch.setattr(slots_module, "_LOOKS_PER_SECOND", 10**9)


@pytest.fixture
def no_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sign-in waiting for a slot looks at the counter again only after ten minutes:
    what lets it in sooner is a slot given back in this process, which wakes it."""
    monkeypatch.setattr(slots_module, "_FIRST_POLL", 600.0)
    monkeypatch.setattr(slots_module, "_LAST_POLL", 600.0)


async def waiting_in_line(throttle: LoginThrottle, names: str, order: list[str]) -> list[Any]:
    """One sign-in to alice per letter of ``names``, started in that order; each waits
    in line for a slot (the first slot is held) and notes its letter once in. No address:
    the account's bucket is the only one (a slot of each bucket wakes a sign-in)."""

    async def sign_in(name: str) -> None:
        async with await throttle.attempt("alice", None) as attempt:
            order.append(name)
            attempt.succeeded()

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(sign_in(name)))
        for _ in range(1000):  # until it waits in line (bounded: it asks the counter once)
            if throttle.waiting.count == len(tasks):
                break
            await asyncio.sleep(0.001)
        assert throttle.waiting.count == len(tasks)
    return tasks


@pytest.mark.usefixtures("no_looks")
async def test_a_slot_given_back_wakes_the_oldest_waiting_sign_in(counter: Counter) -> None:
    """300 right passwords at once on SQLite: each waiting sign-in asked the counter every
    10 to 100 ms, and the asking kept it from settling the checks that would free them
    (270 answered 503 after 30 s). A slot given back now wakes the oldest one waiting."""
    throttle = LoginThrottle(counter, per_account=1, per_address=100, wait=900)
    holder = await throttle.attempt("alice", None)
    order: list[str] = []
    tasks = await waiting_in_line(throttle, "BCD", order)
    holder.succeeded()
    await holder.__aexit__(None, None, None)
    # Each one in wakes the next as it leaves; without waking they would look in 10 min.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert order == ["B", "C", "D"]
    assert throttle.waiting.count == 0


@pytest.mark.usefixtures("no_looks")
async def test_a_sign_in_whose_client_hung_up_stops_waiting_and_checks_nothing(
    counter: Counter,
) -> None:
    """A client that hung up while its sign-in waited for a slot was not noticed: the
    check was made for nobody once a slot came back (the server does not cancel it)."""
    throttle = LoginThrottle(counter, per_account=1, per_address=100, wait=900)
    holder = await throttle.attempt("alice", None)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    checked: list[str] = []

    async def sign_in() -> None:
        slots_module.client_gone.set(gone)  # as the server's HangUpMiddleware does
        async with await throttle.attempt("alice", None) as attempt:
            checked.append("alice")
            attempt.succeeded()

    waiter = asyncio.create_task(sign_in())
    for _ in range(1000):
        if throttle.waiting.count:
            break
        await asyncio.sleep(0.001)
    gone.set_result(None)
    with pytest.raises(Abandoned) as caught:
        await asyncio.wait_for(waiter, timeout=20)  # at once, not after ten minutes
    assert caught.value.status_code == 499
    assert checked == [] and throttle.waiting.count == 0
    await holder.__aexit__(None, None, None)  # a failure: the bucket's one slot is used up
    with pytest.raises(Throttled) as refused:
        await throttle.attempt("alice", None)
    assert type(refused.value) is Throttled  # the hung-up attempt counted nothing


async def test_slots_granted_to_a_client_that_hung_up_go_back_unused(counter: Counter) -> None:
    throttle = LoginThrottle(counter, per_account=1, per_address=100)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.set_result(None)

    async def sign_in() -> None:
        slots_module.client_gone.set(gone)
        await throttle.attempt("alice", "192.0.2.1")

    with pytest.raises(Abandoned):
        await asyncio.create_task(sign_in())
    await fail(throttle, "alice", "192.0.2.1")  # the one slot is free, and no failure counted
    with pytest.raises(Throttled):
        await throttle.attempt("alice", "192.0.2.1")


async def check_password(
    throttle: LoginThrottle, username: str, address: str | None, right: bool, checks: list[str]
) -> None:
    """A sign-in whose password check takes a while (as argon2 does), recorded in ``checks``."""
    async with await throttle.attempt(username, address) as attempt:
        checks.append(username)
        await asyncio.sleep(0.02)
        if right:
            attempt.succeeded()


async def twenty_guesses_get_five_checks(throttle: LoginThrottle) -> None:
    """20 wrong passwords for alice from one address at once: 5 checked (``per_account``),
    15 refused."""
    checks: list[str] = []
    guesses = (check_password(throttle, "alice", "192.0.2.1", False, checks) for _ in range(20))
    results = await asyncio.gather(*guesses, return_exceptions=True)
    assert len(checks) == 5
    assert sum(isinstance(result, Throttled) for result in results) == 15


# Failures


async def test_the_attempt_after_n_failures_is_refused() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, window=900)
    await fail(throttle, "alice", "192.0.2.1", 3)
    with pytest.raises(Throttled) as caught:
        await throttle.attempt("alice", "192.0.2.2")  # from anywhere untrusted
    assert caught.value.status_code == 429
    assert 1 <= caught.value.retry_after <= 900
    assert str(caught.value) == "Too many failed sign-in attempts; try again in 15 minutes."


async def test_an_error_during_the_check_counts_as_a_failure() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1)
    with contextlib.suppress(RuntimeError):
        async with await throttle.attempt("alice", None):
            raise RuntimeError("the users database went away")
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)


@pytest.mark.usefixtures("quick_looks")
async def test_a_parallel_burst_of_guesses_gets_exactly_the_limit(counter: Counter) -> None:
    throttle = LoginThrottle(counter, per_account=5, per_address=20)
    await twenty_guesses_get_five_checks(throttle)
    # Only the 5 checks counted against the address: 15 more fit.
    for number in range(15):
        await fail(throttle, f"user{number}", "192.0.2.1")
    with pytest.raises(Throttled):
        await throttle.attempt("someone-new", "192.0.2.1")


@pytest.mark.usefixtures("quick_looks")
async def test_right_passwords_wait_for_checks_in_flight_instead_of_a_refusal(
    counter: Counter,
) -> None:
    """40 sign-ins to one account from 8 clients at once: none refused, 5 checks at a time."""
    throttle = LoginThrottle(counter, per_account=5, per_address=20)
    checks: list[str] = []
    sign_ins = [
        check_password(throttle, "alice", f"192.0.2.{number % 8}", True, checks)
        for number in range(40)
    ]
    results = await asyncio.gather(*sign_ins, return_exceptions=True)
    assert [result for result in results if result is not None] == []
    assert len(checks) == 40
    await throttle.check("alice", "192.0.2.1")  # no failure was counted


@pytest.mark.usefixtures("quick_looks")
async def test_guesses_beside_right_passwords_still_get_only_the_limit(counter: Counter) -> None:
    throttle = LoginThrottle(counter, per_account=3, per_address=100)
    checks: list[str] = []
    right = [check_password(throttle, "alice", "192.0.2.1", True, checks) for _ in range(20)]
    wrong = [check_password(throttle, "bob", "192.0.2.1", False, checks) for _ in range(20)]
    results = await asyncio.gather(*right, *wrong, return_exceptions=True)
    assert results[:20] == [None] * 20
    assert all(isinstance(result, Throttled) for result in results[20:] if result is not None)
    assert checks.count("bob") == 3


async def test_checks_in_flight_for_too_long_give_busy() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, wait=0.2)
    async with await throttle.attempt("alice", None) as held:
        with pytest.raises(Busy) as caught:
            await throttle.attempt("alice", None)
        held.succeeded()
    assert caught.value.status_code == 503
    assert caught.value.retry_after >= 1
    await succeed(throttle, "alice", None)  # the slot came back


async def test_a_slot_held_by_a_dead_worker_lapses(clock: Clock) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, wait=5, lease=0.2)
    await throttle.attempt("alice", None)  # never settled: the worker died mid-check
    waiting = asyncio.create_task(succeed(throttle, "alice", None))
    await asyncio.sleep(0.05)  # some looks at the bucket
    assert not waiting.done(), "neither refused nor let in while the lease holds"
    clock.advance(0.4)  # the lease lapses (by the end of the generation after its own)
    await asyncio.wait_for(waiting, timeout=5)  # let in: it waited for the lease to lapse


async def test_check_peeks_without_counting() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    for _ in range(5):
        await throttle.check("alice", "192.0.2.1")
    await fail(throttle, "alice", "192.0.2.1", 2)
    with pytest.raises(Throttled) as caught:
        await throttle.check("alice", "192.0.2.1")  # the next attempt would be refused
    assert 1 <= caught.value.retry_after <= 900


async def test_the_refusal_ends_with_the_window(clock: Clock) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, window=0.2)
    await fail(throttle, "alice", None)
    with pytest.raises(Throttled) as caught:
        await throttle.attempt("alice", None)
    assert caught.value.retry_after == 1  # rounded up, at least 1
    assert str(caught.value) == "Too many failed sign-in attempts; try again in 1 second."
    clock.advance(0.3)
    await succeed(throttle, "alice", None)


async def test_refused_attempts_do_not_make_the_wait_longer(clock: Clock) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, window=0.4)
    await fail(throttle, "alice", None)
    for _ in range(5):
        clock.advance(0.05)
        with pytest.raises(Throttled):
            await throttle.attempt("alice", None)
    clock.advance(0.3)  # 0.55s after the first attempt: its window has ended
    await succeed(throttle, "alice", None)


async def test_other_accounts_from_other_addresses_are_unaffected() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3)
    await fail(throttle, "alice", "192.0.2.1", 3)
    await fail(throttle, "bob", "192.0.2.99", 2)


async def test_one_address_trying_many_accounts_hits_the_address_limit() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, per_address=5)
    for number in range(5):
        await fail(throttle, f"user{number}", "203.0.113.7")
    with pytest.raises(Throttled) as by_address:
        await throttle.attempt("someone-new", "203.0.113.7")
    await fail(throttle, "someone-new", "203.0.113.8")
    await fail(throttle, "carol", "198.51.100.1", 3)
    with pytest.raises(Throttled) as by_account:
        await throttle.attempt("carol", "198.51.100.1")
    assert str(by_address.value) == str(by_account.value)  # which limit is not revealed


async def test_a_refused_attempt_counts_nowhere() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=5)
    await fail(throttle, "alice", "192.0.2.1", 2)  # the address has 2
    for _ in range(10):  # a client retrying a locked account
        with pytest.raises(Throttled):
            await throttle.attempt("alice", "192.0.2.1")
    await fail(throttle, "bob", "192.0.2.1", 2)  # ... does not use up its address's budget
    await fail(throttle, "carol", "192.0.2.1", 1)
    for _ in range(3):  # and an address over its limit does not lock the accounts it tries
        with pytest.raises(Throttled):
            await throttle.attempt("dave", "192.0.2.1")
    await fail(throttle, "dave", "192.0.2.2", 2)


async def test_an_address_over_its_limit_stores_nothing_for_the_names_it_tries(
    counter: Counter,
) -> None:
    """Otherwise every refused guess at a new username left a key (an SQL row until the
    next sweep) and cost two writes: a guesser on one address grew the store at will."""
    throttle = LoginThrottle(counter, per_account=5, per_address=3)
    for number in range(3):
        await fail(throttle, f"user{number}", "203.0.113.7")
    before = sorted(await stored_keys(counter))
    for number in range(30):
        with pytest.raises(Throttled):
            await throttle.attempt(f"someone-{number}", "203.0.113.7")
    assert sorted(await stored_keys(counter)) == before


async def test_a_success_counts_nothing_and_clears_nothing() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, per_address=4)
    await fail(throttle, "alice", "192.0.2.1", 2)
    await succeed(throttle, "alice", "192.0.2.1")
    await fail(throttle, "alice", "192.0.2.2")  # 3: a guesser got no more for the success
    with pytest.raises(Throttled):
        await throttle.attempt("alice", "192.0.2.3")
    await fail(throttle, "bob", "192.0.2.1", 2)  # the address: 2 failures kept, the success not
    with pytest.raises(Throttled):
        await throttle.attempt("carol", "192.0.2.1")


async def test_signing_in_from_one_address_never_uses_up_its_budget(counter: Counter) -> None:
    """An office behind one NAT signs in all day without locking itself out."""
    throttle = LoginThrottle(counter, per_account=5, per_address=3)
    for number in range(12):
        await succeed(throttle, f"user{number % 4}", "192.0.2.1")
    await throttle.check("anyone", "192.0.2.1")


async def test_an_admin_can_unlock_an_account() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    await fail(throttle, "alice", None, 2)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)
    await throttle.reset("ALICE")
    await fail(throttle, "alice", None, 2)


# Trusted devices


async def test_a_trusted_device_is_not_locked_by_failures_from_elsewhere(counter: Counter) -> None:
    throttle = LoginThrottle(counter, per_account=3, per_address=100)
    await fail(throttle, "bob", "203.0.113.9", 3)  # anyone, as bob
    with pytest.raises(Throttled):
        await throttle.attempt("bob", "198.51.100.2")
    await succeed(throttle, "bob", "198.51.100.2", device="nonce-1:7")


async def test_each_device_gets_the_limit_and_the_account_its_own(counter: Counter) -> None:
    """What a guesser holding one device cookie can do: the limit there, the limit elsewhere."""
    throttle = LoginThrottle(counter, per_account=2, per_address=100)
    await fail(throttle, "bob", "192.0.2.1", 2, device="stolen:7")
    with pytest.raises(Throttled):
        await throttle.attempt("bob", "192.0.2.1", device="stolen:7")
    await fail(throttle, "bob", "192.0.2.1", 2)
    with pytest.raises(Throttled):
        await throttle.attempt("bob", "192.0.2.1")
    await succeed(throttle, "bob", "192.0.2.1", device="own-laptop:7")


async def test_a_success_on_a_device_clears_its_failures() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3)
    for _round in range(3):  # 2 typos a round, then the right password: never locked
        await fail(throttle, "alice", None, 2, device="laptop:1")
        await succeed(throttle, "alice", None, device="laptop:1")


async def test_a_device_does_not_use_up_its_address() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, per_address=2)
    await fail(throttle, "alice", "192.0.2.1", 2, device="laptop:1")
    await fail(throttle, "bob", "192.0.2.1", 2)
    with pytest.raises(Throttled):
        await throttle.attempt("carol", "192.0.2.1")
    await succeed(throttle, "alice", "192.0.2.1", device="laptop:1")


# Keys and limits


FULLWIDTH_ALICE = "\uff21\uff4c\uff49\uff43\uff45"


@pytest.mark.parametrize("variant", ["Alice", "ALICE", "alice", FULLWIDTH_ALICE])
async def test_case_and_width_variants_share_a_count(variant: str) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    await fail(throttle, "alice", None)
    await fail(throttle, variant, None)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)


async def test_ipv6_addresses_are_counted_per_64() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=2)
    await fail(throttle, "a", "2001:db8:1:2::1")
    await fail(throttle, "b", "2001:db8:1:2:ffff:ffff:ffff:ffff")
    with pytest.raises(Throttled):
        await throttle.attempt("c", "2001:0db8:0001:0002::abcd")
    await fail(throttle, "c", "2001:db8:1:3::1")  # the next /64


async def test_ipv4_is_counted_per_address_and_mapped_ipv4_with_it() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=2)
    await fail(throttle, "a", "192.0.2.1")
    await fail(throttle, "b", "192.0.2.2")
    await fail(throttle, "b", "::ffff:192.0.2.1")
    with pytest.raises(Throttled):
        await throttle.attempt("c", "192.0.2.1")


async def test_an_unparsable_address_is_counted_as_it_is() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=1)
    await fail(throttle, "a", "unix:/run/app.sock")
    with pytest.raises(Throttled):
        await throttle.attempt("b", "unix:/run/app.sock")
    await fail(throttle, "b", "unix:/run/other.sock")


async def test_without_an_address_only_the_account_limit_applies() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=1)
    await fail(throttle, "alice", None)
    await fail(throttle, "bob", None)
    await fail(throttle, "carol", None)
    await fail(throttle, "alice", None)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)


async def test_a_limit_of_zero_is_off() -> None:
    no_account_limit = LoginThrottle(MemoryCounter(), per_account=0, per_address=1000)
    for number in range(30):
        await fail(no_account_limit, "alice", f"192.0.2.{number}")
    no_address_limit = LoginThrottle(MemoryCounter(), per_account=1000, per_address=0)
    for number in range(30):
        await fail(no_address_limit, f"user{number}", "192.0.2.1")
    untouched = MemoryCounter()
    unlimited = LoginThrottle(untouched, per_account=0, per_address=0)
    await fail(unlimited, "alice", "192.0.2.1", 50)
    await fail(unlimited, "alice", "192.0.2.1", 50, device="laptop:1")
    assert untouched._counts == {} and untouched._flying == {}


@pytest.mark.parametrize(
    "options",
    [
        {"per_account": -1},
        {"per_address": -5},
        {"per_account": 2.5},
        {"per_address": True},
        {"per_account": "5"},
        {"window": 0},
        {"window": -1.0},
        {"window": math.inf},
        {"window": math.nan},
        {"window": "900"},
        {"window": True},
        {"wait": 0},
        {"lease": math.inf},
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        LoginThrottle(MemoryCounter(), **options)
    name, value = next(iter(options.items()))
    assert f"throttle_{name}={value!r}" in str(caught.value)


async def test_reaching_a_limit_is_logged_once_without_the_username(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=100)
    with caplog.at_level(logging.WARNING, logger="doorman.security"):
        for _ in range(5):
            with contextlib.suppress(Throttled):
                await fail(throttle, "hunter2-typed-as-username", "192.0.2.1")
    assert len(caplog.records) == 1
    assert "account" in caplog.text
    assert "192.0.2.1" in caplog.text
    assert "hunter2" not in caplog.text


# Registrations


async def test_registrations_are_limited_per_address_in_flight_included(counter: Counter) -> None:
    throttle = RegistrationThrottle(counter, per_address=3)
    started: list[int] = []

    async def register(number: int) -> None:
        async with await throttle.attempt("192.0.2.1") as attempt:
            started.append(number)
            await asyncio.sleep(0.02)
            attempt.succeeded()  # a success counts too: each one is an account

    results = await asyncio.gather(*(register(n) for n in range(10)), return_exceptions=True)
    assert len(started) == 3
    refusals = [result for result in results if isinstance(result, Throttled)]
    assert len(refusals) == 7
    assert str(refusals[0]) == "Too many registrations from your network; try again in 15 minutes."
    async with await throttle.attempt("192.0.2.2"):  # another address
        pass
    async with await throttle.attempt(None):  # no address: no limit
        pass


def test_a_bad_registration_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"throttle_registrations=-1"):
        RegistrationThrottle(MemoryCounter(), per_address=-1)


# Shared between workers


async def test_two_app_instances_share_counts_through_one_sqlite_file(tmp_path: Path) -> None:
    first = create_engine(str(tmp_path / "t.db"))
    second = create_engine(str(tmp_path / "t.db"))
    try:
        await SQLCounter(first).create_table()  # as a start-up would
        worker_a = LoginThrottle(SQLCounter(first), per_account=3)
        worker_b = LoginThrottle(SQLCounter(second), per_account=3)
        await fail(worker_a, "alice", "192.0.2.1", 2)
        held = await worker_b.attempt("alice", "192.0.2.1")  # in flight on b
        with pytest.raises(Busy):
            await LoginThrottle(SQLCounter(first), per_account=3, wait=0.1).attempt("alice", None)
        async with held:
            pass  # a failure: 3
        for worker in (worker_a, worker_b):
            with pytest.raises(Throttled):
                await worker.attempt("Alice", "192.0.2.9")
        await worker_b.reset("alice")
        await succeed(worker_a, "alice", "192.0.2.1")
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.redis
async def test_two_app_instances_share_counts_through_one_redis(
    redis_url: str, redis_prefix: str
) -> None:
    first, second = redis_client(redis_url), redis_client(redis_url)
    try:
        worker_a = LoginThrottle(RedisCounter(first, prefix=redis_prefix), per_account=3)
        worker_b = LoginThrottle(RedisCounter(second, prefix=redis_prefix), per_account=3)
        await fail(worker_a, "alice", "192.0.2.1", 2)
        await fail(worker_b, "alice", "192.0.2.1", 1)
        for worker in (worker_a, worker_b):
            with pytest.raises(Throttled):
                await worker.attempt("alice", "192.0.2.9")
        await worker_b.reset("alice")
        await succeed(worker_a, "alice", "192.0.2.1")
    finally:
        await first.aclose()
        await second.aclose()


# Stored keys


async def test_stored_keys_hold_neither_username_nor_address(counter: Counter) -> None:
    throttle = LoginThrottle(counter)
    await fail(throttle, "Alice.Smith@example.com", "198.51.100.23")
    await fail(throttle, "Alice.Smith@example.com", "2001:db8:abcd:12::7")
    await fail(throttle, "Alice.Smith@example.com", None, device="a-nonce-of-64-bits:17")
    await RegistrationThrottle(counter).attempt("198.51.100.23")
    keys = await stored_keys(counter)
    secrets_in_keys = ["alice", "smith", "example", "198.51", "100.23", "2001", "db8", "abcd"]
    for key in keys:
        assert not any(part in key.lower() for part in [*secrets_in_keys, "nonce"]), key
    failures = sorted(key[:2] for key in keys if not key.startswith("~"))
    assert failures == ["a:", "c:", "c:", "d:"]
    flights = {key.partition("@")[0] for key in keys if key.startswith("~")}  # SQL: lock rows
    assert sorted(key[:3] for key in flights) == [
        "~a:", "~c:", "~c:", "~d:", "~r:",
    ]  # fmt: skip


async def test_a_secret_keys_the_hashes() -> None:
    plain, keyed, same, rotated = (MemoryCounter() for _ in range(4))
    await fail(LoginThrottle(plain), "alice", "192.0.2.1")
    await fail(LoginThrottle(keyed, secret="s" * 32), "alice", "192.0.2.1")
    await fail(LoginThrottle(same, secret=b"s" * 32), "alice", "192.0.2.1")
    await fail(LoginThrottle(rotated, secret=["s" * 32, "o" * 32]), "alice", "192.0.2.1")
    assert set(plain._counts).isdisjoint(keyed._counts)
    assert set(keyed._counts) == set(same._counts) == set(rotated._counts)  # the newest


async def test_the_secret_itself_is_not_the_hash_key() -> None:
    counts = MemoryCounter()
    await fail(LoginThrottle(counts, per_address=0, secret="s" * 32), "alice", None)
    with_the_raw_secret = hmac.new(b"s" * 32, b"alice", hashlib.sha256).hexdigest()[:40]
    assert list(counts._counts) != ["a:" + with_the_raw_secret]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        LoginThrottle(MemoryCounter(), secret="short")


class KeyByKey:
    """A ``Counter`` of one's own, with no ``acquire_all``/``settle_all``: the per-key
    protocol that docs/throttling.md documents."""

    def __init__(self) -> None:
        self._inner = MemoryCounter()
        self.acquire = self._inner.acquire
        self.settle = self._inner.settle
        self.peek = self._inner.peek
        self.reset = self._inner.reset
        self.clear_expired = self._inner.clear_expired


@pytest.mark.usefixtures("quick_looks")
async def test_a_counter_without_batches_is_taken_key_by_key() -> None:
    counter = KeyByKey()
    assert not isinstance(counter, BatchCounter)
    throttle = LoginThrottle(counter, per_account=5, per_address=20)
    await twenty_guesses_get_five_checks(throttle)
    await succeed(throttle, "bob", "192.0.2.1")  # the address had room: 5 of 20
    assert await counter.peek(throttle._account("alice")) == (
        5,
        pytest.approx(time.time() + 900, abs=5),
    )


# A request cancelled mid-way (its client gone, a timeout): its slots do not stay held


class SlowCounter(MemoryCounter):
    """A counter on a slow database: each take and settle answers after ``pause``."""

    def __init__(self, pause: float, settles: int = 0) -> None:
        super().__init__()
        self.pause = pause
        self.settling, self.settles = 0, settles
        self.all_settling = asyncio.Event()  # once ``settles`` settles are under way

    async def acquire_all(self, slots: Any, lease: Any) -> Any:
        answer = await super().acquire_all(slots, lease)
        await asyncio.sleep(self.pause)  # taken; the answer on its way back
        return answer

    async def settle_all(self, outcomes: Any, window: float, lease: Any) -> list[int]:
        self.settling += 1
        if self.settling == self.settles:
            self.all_settling.set()
        await asyncio.sleep(self.pause)
        return await super().settle_all(outcomes, window, lease)


async def test_sign_ins_cancelled_while_they_settle_still_give_their_slots_back() -> None:
    counter = SlowCounter(pause=0.05, settles=5)
    throttle = LoginThrottle(counter, per_account=5, wait=0.5)
    checks: list[str] = []
    wrong = [check_password(throttle, "alice", "192.0.2.1", False, checks) for _ in range(2)]
    right = [check_password(throttle, "alice", "192.0.2.1", True, checks) for _ in range(3)]
    tasks = [asyncio.create_task(sign_in) for sign_in in [*wrong, *right]]
    await asyncio.wait_for(counter.all_settling.wait(), 5)
    for task in tasks:  # every one of them is settling: its client goes away
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.2)  # the settles run on to their end
    assert (await counter.peek(throttle._account("alice")))[0] == 2  # the wrong ones counted
    await succeed(throttle, "alice", "192.0.2.1")  # 3 slots free, not held for the lease


async def test_a_sign_in_cancelled_while_it_takes_its_slots_gives_them_back() -> None:
    counter = SlowCounter(pause=0.05)
    throttle = LoginThrottle(counter, per_account=1, wait=0.5)
    taking = asyncio.create_task(throttle.attempt("alice", "192.0.2.1"))
    await asyncio.sleep(0.02)  # the slot is taken; its answer has not come back
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await asyncio.sleep(0.2)  # the take ends, and its slot is given back: nobody holds it
    await succeed(throttle, "alice", "192.0.2.1")
    assert await counter.peek(throttle._account("alice")) == (0, 0.0)


async def test_links_are_counted_per_address_as_addresses_compare() -> None:
    """Without ASCII case ("EVE@" is "eve@"), and no further: "Éve@" and "éve@" are two
    addresses, which Python's lower() had counted as one."""
    from doorman.accounts.throttle import MailThrottle

    throttle = MailThrottle(MemoryCounter(), per_email=1, per_address=0)
    async with await throttle.attempt("eve@example.com", None):
        pass
    with pytest.raises(Throttled):
        await throttle.attempt("EVE@EXAMPLE.COM", None)
    async with await throttle.attempt("Éve@example.com", None):
        pass
    async with await throttle.attempt("éve@example.com", None):
        pass
