"""A password reset on one doorman server ends the sessions on another, at the next request.

Two ``doorman serve`` processes share PostgreSQL and Redis and a real SMTP
relay (aiosmtpd, in this process). The link is asked for on one, followed on
the other, and a session made before on the first is gone at its next request;
the link, used, is refused by both.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import REDIS_URL
from .mail_server import MailServer
from .servers import (
    PASSWORD,
    REQUEST_S,
    SECRET,
    Server,
    fresh_postgres_database,
    in_own_loop,
    running,
    sign_in,
    start_server,
    username_of,
    whoami,
)
from .test_scale import redis_db_url as redis_db_url

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a different horse, stapled"
LINK = re.compile(r"/-/password-reset/[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def mail_relay() -> Iterator[MailServer]:
    with MailServer() as relay:
        yield relay


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, redis_db_url: str, mail_relay: MailServer
) -> Iterator[tuple[Server, Server, str]]:
    assert REDIS_URL
    with fresh_postgres_database() as db:
        settings: dict[str, Any] = {
            "db": db,
            "sessions": redis_db_url,
            "smtp_url": mail_relay.url,
            "email_from": "noreply@example.com",
            "public_url": "http://auth.example.com",
        }
        directory = tmp_path_factory.mktemp("mail-pair")
        a = start_server(directory / "a", **settings)
        b = start_server(directory / "b", **settings)
        with running(a, b):
            yield a, b, db


def add_user_with_email(db: str, username: str, email: str) -> None:
    from doorman.config import close_doorman, load_settings, open_doorman

    async def create() -> None:
        settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
        doorman, store, _ = await open_doorman(settings)
        try:
            await doorman.create_user(username, PASSWORD, email=email)
        finally:
            await close_doorman(doorman, store)

    in_own_loop(create())


def delivered_link(relay: MailServer, to: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        for message in relay.messages:
            if message.recipients == [to] and "Reset" in message.message["Subject"]:
                found = LINK.search(message.body("plain"))
                assert found
                return found[0]
        assert time.monotonic() < deadline, "no reset message arrived"
        time.sleep(0.05)


def csrf(browser: httpx.Client) -> str:
    token: str = browser.get("/-/whoami?csrf=1").json()["csrftoken"]
    return token


def test_a_reset_on_one_server_ends_the_sessions_on_the_other(
    pair: tuple[Server, Server, str], mail_relay: MailServer
) -> None:
    a, b, db = pair
    name = "frank-" + secrets.token_hex(3)
    email = f"{name}@example.com"
    add_user_with_email(db, name, email)
    on_a = sign_in(a.url, name)
    with httpx.Client(base_url=b.url, timeout=REQUEST_S) as browser:
        asked = browser.post("/-/password-reset", data={"email": email, "csrftoken": csrf(browser)})
        assert asked.status_code == 200, asked.text
    path = delivered_link(mail_relay, email)  # the link names public_url; follow it on b
    with httpx.Client(base_url=b.url, timeout=REQUEST_S) as browser:
        moved = browser.get(path)
        assert moved.status_code == 303, moved.text
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD, "csrftoken": csrf(browser)}
        done = browser.post(moved.headers["location"], data=form)
        assert done.status_code == 303, done.text
        assert browser.get("/-/whoami").json()["actor"]["username"] == name
    assert whoami(a.url, on_a) is None  # the next request on the other server
    assert username_of(a.url, sign_in(a.url, name, NEW_PASSWORD)) == name
    for server in (a, b):
        again = httpx.get(server.url + path, timeout=REQUEST_S)
        assert again.status_code == 400
