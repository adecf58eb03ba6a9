"""Throttling against a real ``doorman serve`` on loopback, as the attacker's review found it.

One server on SQLite, one on PostgreSQL + Redis (two workers). Clients take
distinct addresses with ``X-Forwarded-For``, which the server trusts from
127.0.0.1 (``forwarded_allow_ips``). A test-only plugin gives the server quick
argon2 parameters; the users are made with the same ones, so no sign-in re-hashes.

- the load check of issue 12: 200 right sign-ins for 5 accounts from 50 clients
  at once, none refused, while a parallel guesser gets no more password checks
  than the limit;
- a browser that signed in before is not locked out by guesses from elsewhere;
- the current password on the account forms is throttled and logged;
- registration is throttled per address.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import test_scale
from .helpers import COOKIE
from .servers import PASSWORD, REQUEST_S, SECRET, Server, in_own_loop, running, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PER_ACCOUNT, PER_ADDRESS, REGISTRATIONS = 5, 20, 3
SETTINGS = {
    "throttle_per_account": PER_ACCOUNT,
    "throttle_per_address": PER_ADDRESS,
    "throttle_registrations": REGISTRATIONS,
    "throttle_window": 900,
    "allow_registration": "true",
    "forwarded_allow_ips": "127.0.0.1",
}
FAST_HASHER = {"time_cost": 1, "memory_cost": 1024}
FAST_HASHER_PLUGIN = f"""\
from doorman import PasswordHasher, hookimpl


@hookimpl
def startup(doorman):
    doorman.hasher = doorman.users.hasher = PasswordHasher(**{FAST_HASHER!r})
"""
USERS = [*(f"user{n}" for n in range(5)), "victim", "bob", "mallory", "carol", "dave"]
NEW_PASSWORD = "a different horse, stapled"
CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')
HTML = {"accept": "text/html,application/xhtml+xml"}
TEST_S = 120  # the longest any test here may take

redis_db_url = test_scale.redis_db_url  # the fixture: a Redis database number of our own


@dataclass
class Deployment:
    server: Server
    url: str


def add_users(db: str) -> None:
    """``USERS``, password ``PASSWORD``, hashed with the server's quick parameters."""
    from doorman import PasswordHasher
    from doorman.config import close_doorman, load_settings, open_doorman

    async def create() -> None:
        settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
        doorman, store, _ = await open_doorman(settings)
        doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST_HASHER)  # type: ignore[arg-type]
        try:
            for name in USERS:
                await doorman.create_user(name, PASSWORD)
        finally:
            await close_doorman(doorman, store)

    in_own_loop(create())


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("throttle")
    plugins = directory / "plugins"
    plugins.mkdir()
    (plugins / "fast_hasher.py").write_text(FAST_HASHER_PLUGIN)
    settings: dict[str, Any] = {**SETTINGS, "plugins_dir": str(plugins)}
    if request.param == "sqlite":
        settings["db"] = str(directory / "doorman.db")
        yield from _serve(directory, settings, workers=1)
        return
    with test_scale.fresh_postgres_database() as db:
        settings.update(db=db, sessions=request.getfixturevalue("redis_db_url"))
        yield from _serve(directory, settings, workers=2)


def _serve(directory: Path, settings: dict[str, Any], *, workers: int) -> Iterator[Deployment]:
    add_users(settings["db"])
    server = start_server(directory / "server", workers=workers, **settings)
    with running(server):
        yield Deployment(server, server.url)


class Browser:
    """One visitor: a cookie jar of its own, and an address of its own (X-Forwarded-For)."""

    def __init__(self, url: str, address: str) -> None:
        self.address = address
        self.http = httpx.AsyncClient(
            base_url=url, headers={"x-forwarded-for": address}, timeout=REQUEST_S
        )

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()

    async def form_token(self, path: str) -> str:
        page = await self.http.get(path, headers=HTML)
        assert page.status_code == 200, page.text
        found = CSRF_FIELD.search(page.text)
        assert found, f"no csrftoken field on {path}"
        return found[1]

    async def post(self, path: str, form_page: str, fields: dict[str, str]) -> httpx.Response:
        """Fill in the form of ``form_page`` and submit it to ``path``, as a browser would."""
        token = await self.form_token(form_page)
        return await self.http.post(path, data={**fields, "csrftoken": token}, headers=HTML)

    async def sign_in(self, username: str, password: str = PASSWORD) -> int:
        fields = {"username": username, "password": password}
        return (await self.post("/-/login", "/-/login", fields)).status_code

    async def change_password(self, current: str) -> int:
        fields = {"current_password": current, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        return (await self.post("/-/account/password", "/-/account", fields)).status_code

    async def change_email(self, current: str) -> int:
        fields = {"current_password": current, "email": "dave@example.com"}
        return (await self.post("/-/account/email", "/-/account", fields)).status_code


async def sign_in_once(url: str, address: str, username: str, password: str = PASSWORD) -> int:
    """A sign-in from a fresh browser: no session, no device cookie."""
    async with Browser(url, address) as browser:
        return await browser.sign_in(username, password)


async def guesses(url: str, username: str, count: int, network: str) -> collections.Counter[int]:
    """``count`` wrong passwords for ``username`` at once, from 10 addresses: the statuses."""
    tries = (
        sign_in_once(url, f"{network}.{number % 10 + 1}", username, f"guess number {number}")
        for number in range(count)
    )
    return collections.Counter(await asyncio.gather(*tries))


def failures_logged(server: Server, username: str, reason: str) -> int:
    """How many failed sign-ins for ``username`` for ``reason`` the server logged."""
    pattern = rf"failed sign-in for {re.escape(repr(username))} from \S+: {reason}"
    return len(re.findall(pattern, server.log()))


async def test_load_check_right_passwords_are_never_refused_and_guesses_stay_bounded(
    deployment: Deployment,
) -> None:
    """200 right sign-ins for 5 accounts from 50 clients at once (distinct addresses, fresh
    browsers): 200 sign-ins, no 429; a guesser in parallel gets ``PER_ACCOUNT`` checks."""

    async def client(number: int) -> list[int]:
        address = f"10.1.0.{number + 1}"
        return [await sign_in_once(deployment.url, address, f"user{number % 5}") for _ in range(4)]

    async def everyone() -> list[int]:
        return [
            status
            for statuses in await asyncio.gather(*map(client, range(50)))
            for status in statuses
        ]

    signed_in, guessed = await asyncio.wait_for(
        asyncio.gather(everyone(), guesses(deployment.url, "victim", 60, "10.2.0")), TEST_S
    )
    assert collections.Counter(signed_in) == {302: 200}
    assert guessed == {401: PER_ACCOUNT, 429: 60 - PER_ACCOUNT}


async def test_a_browser_that_signed_in_before_is_not_locked_out(deployment: Deployment) -> None:
    url = deployment.url
    async with Browser(url, "10.3.0.1") as own, Browser(url, "10.3.0.2") as mallory:
        assert await own.sign_in("bob") == 302
        device = own.http.cookies["doorman_device"]
        assert await mallory.sign_in("mallory") == 302  # a device cookie, for mallory

        async def owner_meanwhile() -> list[int]:  # bob signs in while the guesses run
            return [await own.sign_in("bob") for _ in range(4)]

        guessed, owner = await asyncio.wait_for(
            asyncio.gather(guesses(url, "BOB", 30, "10.3.1"), owner_meanwhile()), TEST_S
        )
        assert guessed == {401: PER_ACCOUNT, 429: 30 - PER_ACCOUNT}
        assert owner == [302] * 4  # bob's own browser is not locked out
        assert await own.sign_in("bob") == 302
        assert await sign_in_once(url, "10.3.0.3", "bob") == 429  # a new browser is, for now
        assert await mallory.sign_in("bob") == 429  # a device cookie for another account
        for cookie, expected in [(device, 302), (device[:-4] + "AAAA", 429), ("%%junk", 429)]:
            async with Browser(url, "10.3.0.4") as other:  # the cookie copied, or forged
                other.http.cookies.set("doorman_device", cookie, "127.0.0.1", "/-/")
                assert await other.sign_in("bob") == expected, cookie

        # A stolen device cookie gets its own few guesses, no more.
        statuses = [await own.sign_in("bob", f"stolen guess {n}") for n in range(PER_ACCOUNT + 2)]
        assert statuses == [401] * PER_ACCOUNT + [429] * 2
        assert await own.sign_in("bob") == 429


async def test_the_current_password_on_the_account_forms_is_throttled_and_logged(
    deployment: Deployment,
) -> None:
    url, server = deployment.url, deployment.server
    async with Browser(url, "10.4.0.1") as carol:
        assert await carol.sign_in("carol") == 302
        statuses = [await carol.change_password(f"guess {n}") for n in range(40)]
        assert statuses == [400] * PER_ACCOUNT + [429] * (40 - PER_ACCOUNT)
        assert await carol.change_password(PASSWORD) == 429
        # A thief with carol's session but not her browser's device cookie: the
        # account's own bucket, as many guesses again, no more.
        async with Browser(url, "10.4.9.9") as thief:
            thief.http.cookies.set(COOKIE, carol.http.cookies[COOKIE], "127.0.0.1", "/")
            assert (await thief.http.get("/-/whoami")).json()["actor"]["username"] == "carol"
            statuses = [await thief.change_password(f"thief {n}") for n in range(PER_ACCOUNT + 2)]
            assert statuses == [400] * PER_ACCOUNT + [429] * 2
    assert failures_logged(server, "carol", "bad-credentials") == 2 * PER_ACCOUNT
    assert failures_logged(server, "carol", "throttled") == 41 - PER_ACCOUNT + 2

    async with Browser(url, "10.4.0.2") as dave:  # the email form counts in the same place
        assert await dave.sign_in("dave") == 302
        assert [await dave.change_email(f"guess {n}") for n in range(3)] == [400] * 3
        assert [await dave.change_password("wrong") for _ in range(2)] == [400] * 2
        assert await dave.change_email(PASSWORD) == 429
        assert await dave.change_password(PASSWORD) == 429
    assert failures_logged(server, "dave", "bad-credentials") == PER_ACCOUNT


async def test_registration_is_throttled_per_address(deployment: Deployment) -> None:
    async def register(number: int, address: str) -> int:
        async with Browser(deployment.url, address) as browser:
            fields = {"username": f"newcomer{number}", "password": PASSWORD, "password2": PASSWORD}
            return (await browser.post("/-/register", "/-/register", fields)).status_code

    statuses = await asyncio.wait_for(
        asyncio.gather(*(register(n, "10.5.0.1") for n in range(30))), TEST_S
    )
    assert collections.Counter(statuses) == {303: REGISTRATIONS, 429: 30 - REGISTRATIONS}
    assert await register(99, "10.5.0.2") == 303  # another address
