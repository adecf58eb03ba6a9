"""Device cookies: which browsers count as having signed in to an account before."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorman import PasswordHasher
from doorman.accounts.devices import DeviceCookies
from doorman.accounts.throttle import LoginThrottle
from doorman.accounts.users import User
from doorman.core import Doorman
from doorman.exceptions import AuthenticationFailed, Throttled
from doorman.signing import b64decode
from doorman.stores import MemoryCounter

from .conftest import SECRET
from .helpers import migrated_sqlite

pytestmark = pytest.mark.anyio

OLD_SECRET = "an-older-secret-" + "o" * 32
PASSWORD = "correct horse battery staple"


def user(user_id: int = 7, **changes: object) -> User:
    found = User(
        id=user_id,
        username=f"user{user_id}",
        email=None,
        is_admin=False,
        is_active=True,
        session_version=0,
        created_at=0.0,
        last_login=None,
        password_hash=f"$argon2id$hash-of-user-{user_id}",
    )
    return dataclasses.replace(found, **changes)


def test_a_cookie_made_at_sign_in_trusts_that_account_only() -> None:
    devices = DeviceCookies(SECRET)
    cookie = devices.remember(None, user(7))
    device = devices.device_for(cookie, user(7))
    assert device is not None and device.endswith(":7")
    assert devices.device_for(cookie, user(8)) is None
    assert devices.device_for(None, user(7)) is None


def test_one_browser_keeps_one_id_for_several_accounts() -> None:
    devices = DeviceCookies(SECRET)
    cookie = devices.remember(devices.remember(None, user(7)), user(8))
    seven, eight = devices.device_for(cookie, user(7)), devices.device_for(cookie, user(8))
    assert seven and eight and seven.split(":")[0] == eight.split(":")[0]
    other_browser = devices.device_for(devices.remember(None, user(7)), user(7))
    assert other_browser != seven  # each browser its own bucket


def test_the_cookie_names_no_account() -> None:
    cookie = DeviceCookies(SECRET).remember(None, user(7, username="alice.smith"))
    payload = json.loads(b64decode(cookie.split(".")[0]))
    assert set(payload) == {"n", "a"}
    assert "alice" not in cookie and "alice" not in json.dumps(payload)
    assert [len(mark) for mark in payload["a"]] == [43]  # a MAC, not an id or a name


def test_the_latest_five_accounts_are_kept() -> None:
    devices = DeviceCookies(SECRET)
    cookie = None
    for user_id in range(1, 8):
        cookie = devices.remember(cookie, user(user_id))
    cookie = devices.remember(cookie, user(7))  # again: not twice
    trusted = [n for n in range(1, 8) if devices.device_for(cookie, user(n))]
    assert trusted == [3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    "change",
    [{"session_version": 1}, {"password_hash": "$argon2id$a-new-password"}],
    ids=["signed-out-everywhere", "new-password"],
)
def test_a_new_password_or_signing_out_everywhere_ends_the_trust(change: dict[str, object]) -> None:
    devices = DeviceCookies(SECRET)
    cookie = devices.remember(None, user(7))
    assert devices.device_for(cookie, user(7, **change)) is None


@pytest.mark.parametrize(
    "cookie",
    ["", "garbage", "a.b.c", "é" * 10, "x" * 5000, ".", "e30.1.2"],
)
def test_anything_else_is_no_device(cookie: str) -> None:
    assert DeviceCookies(SECRET).device_for(cookie, user(7)) is None


@given(st.text(max_size=5000) | st.text(alphabet="abcAB012-_.", max_size=300))
def test_no_cookie_a_client_makes_up_raises_or_is_trusted(cookie: str) -> None:
    devices = DeviceCookies(SECRET)
    assert devices.device_for(cookie, user(7)) is None
    remembered = devices.remember(cookie, user(7))  # a fresh cookie for this browser
    assert devices.device_for(remembered, user(7)) is not None


def test_a_tampered_or_foreign_cookie_is_no_device() -> None:
    devices = DeviceCookies(SECRET)
    cookie = devices.remember(None, user(7))
    tampered = cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB")
    assert devices.device_for(tampered, user(7)) is None
    assert DeviceCookies("another-secret-" + "x" * 32).device_for(cookie, user(7)) is None


def test_old_secrets_still_verify_and_the_newest_signs() -> None:
    cookie = DeviceCookies(OLD_SECRET).remember(None, user(7))
    rotated = DeviceCookies([SECRET, OLD_SECRET])
    device = rotated.device_for(cookie, user(7))
    assert device is not None
    renewed = rotated.remember(cookie, user(7))
    assert DeviceCookies(SECRET).device_for(renewed, user(7)) == device  # same browser id


def test_an_expired_cookie_is_no_device() -> None:
    devices = DeviceCookies(SECRET, max_age=-1)  # anything signed is too old
    assert devices.device_for(devices.remember(None, user(7)), user(7)) is None


# Through Doorman.authenticate


@pytest.fixture
async def doorman(tmp_path: Path) -> AsyncIterator[Doorman]:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=100)
    found = Doorman(
        migrated_sqlite(tmp_path / "doorman.db"),
        secret=SECRET,
        throttle=throttle,
        hasher=PasswordHasher(time_cost=1, memory_cost=1024),
        entry_points=False,
    )
    await found.startup()
    yield found
    await found.close()


async def lock(doorman: Doorman, username: str) -> None:
    for _ in range(doorman.throttle.per_account):
        with pytest.raises(AuthenticationFailed):
            await doorman.authenticate(username, "a wrong guess", client="203.0.113.9")


async def test_a_device_cookie_signs_in_to_a_locked_account(doorman: Doorman) -> None:
    bob = await doorman.create_user("bob", PASSWORD)
    cookie = doorman.devices.remember(None, bob)
    await lock(doorman, "bob")
    with pytest.raises(Throttled):
        await doorman.authenticate("bob", PASSWORD, client="192.0.2.1")
    assert await doorman.authenticate("bob", PASSWORD, client="192.0.2.1", device=cookie) == bob


async def test_after_a_password_change_old_device_cookies_are_untrusted(doorman: Doorman) -> None:
    bob = await doorman.create_user("bob", PASSWORD)
    cookie = doorman.devices.remember(None, bob)
    await doorman.set_password(bob, "a different horse, stapled")
    await lock(doorman, "bob")
    with pytest.raises(Throttled):
        await doorman.authenticate("bob", "a different horse, stapled", client=None, device=cookie)


async def test_confirm_password_counts_where_sign_ins_count(doorman: Doorman) -> None:
    bob = await doorman.create_user("bob", PASSWORD)
    await doorman.confirm_password(bob, PASSWORD, client=None)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await doorman.confirm_password(bob, "a wrong guess", client=None)
    with pytest.raises(Throttled):
        await doorman.authenticate("bob", PASSWORD, client=None)
    with pytest.raises(Throttled):
        await doorman.confirm_password(bob, PASSWORD, client=None)
    cookie = doorman.devices.remember(None, bob)  # the owner's browser: a bucket of its own
    await doorman.confirm_password(bob, PASSWORD, client=None, device=cookie)
