"""Passkeys on two servers sharing one PostgreSQL (and Redis, or the cookie store).

Nothing about a passkey is kept in a worker: a passkey removed through one
server is refused by the other at the next request, and a challenge answered
on one cannot be answered again on the other, even with the session cookie of
before (the cookie store keeps the challenge in the cookie; the shared
counter's claim refuses it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .servers import PASSWORD, REQUEST_S, add_users, fresh_postgres_database, running, start_server
from .soft_authenticator import SoftAuthenticator
from .test_scale import Pair
from .test_scale import redis_db_url as redis_db_url  # the fixture

#: Two real ``doorman serve`` processes.
pytestmark = pytest.mark.e2e

ORIGIN = "http://auth.example.com"  # both servers' public_url: one relying party


@pytest.fixture(scope="module", params=["postgres+redis", "postgres+cookie"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    with fresh_postgres_database() as db:
        sessions = (
            request.getfixturevalue("redis_db_url")
            if request.param == "postgres+redis"
            else "cookie"
        )
        settings: dict[str, Any] = {"db": db, "sessions": sessions, "public_url": ORIGIN}
        directory = tmp_path_factory.mktemp("passkey-pair")
        a = start_server(directory / "a", **settings)
        b = start_server(directory / "b", **settings)
        with running(a, b):
            add_users(db, "alice")
            yield Pair(a, b, db)


class Visitor:
    """A browser: one cookie jar for both servers (cookies do not care about ports)."""

    def __init__(self, cookies: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(timeout=REQUEST_S, cookies=cookies)

    def token(self, url: str) -> str:
        answer = self.http.get(f"{url}/-/whoami?csrf=1")
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["csrftoken"]
        return token

    def post(self, url: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"x-csrftoken": self.token(url)}
        return self.http.post(f"{url}/-/passkeys/{path}", json=body, headers=headers)

    def sign_in(self, url: str, username: str) -> None:
        form = {"username": username, "password": PASSWORD, "csrftoken": self.token(url)}
        assert self.http.post(f"{url}/-/login", data=form).status_code == 302

    def who(self, url: str) -> str | None:
        actor = self.http.get(f"{url}/-/whoami").json()["actor"]
        return None if actor is None else str(actor["username"])


@pytest.fixture
def visitors() -> Iterator[Callable[..., Visitor]]:
    """New visitors, their connections closed at the end."""
    made: list[Visitor] = []

    def new(cookies: dict[str, str] | None = None) -> Visitor:
        made.append(Visitor(cookies))
        return made[-1]

    yield new
    for visitor in made:
        visitor.http.close()


def enrolled(pair: Pair, new: Callable[..., Visitor]) -> tuple[SoftAuthenticator, int]:
    owner, authenticator = new(), SoftAuthenticator(origin=ORIGIN)
    owner.sign_in(pair.a.url, "alice")
    options = owner.post(pair.a.url, "register/options", {}).json()
    added = owner.post(pair.a.url, "register", {"credential": authenticator.register(options)})
    assert added.status_code == 201, added.text
    return authenticator, added.json()["passkey"]["id"]


def test_a_passkey_removed_on_one_is_refused_on_the_other(
    pair: Pair, visitors: Callable[..., Visitor]
) -> None:
    authenticator, passkey_id = enrolled(pair, visitors)
    visitor = visitors()
    options = visitor.post(pair.b.url, "authenticate/options", {"purpose": "sign-in"}).json()
    body = {"purpose": "sign-in", "credential": authenticator.assert_(options)}
    assert visitor.post(pair.b.url, "authenticate", body).status_code == 200
    assert visitor.who(pair.b.url) == "alice"
    removed = visitor.post(pair.a.url, f"{passkey_id}/remove", {})
    assert removed.status_code == 200, removed.text
    stranger = visitors()
    options = stranger.post(pair.b.url, "authenticate/options", {"purpose": "sign-in"}).json()
    body = {"purpose": "sign-in", "credential": authenticator.assert_(options)}
    refused = stranger.post(pair.b.url, "authenticate", body)
    assert refused.status_code == 401 and stranger.who(pair.b.url) is None


def test_a_challenge_answered_on_one_is_refused_on_the_other(
    pair: Pair, visitors: Callable[..., Visitor]
) -> None:
    authenticator, _ = enrolled(pair, visitors)
    visitor = visitors()
    options = visitor.post(pair.a.url, "authenticate/options", {"purpose": "sign-in"}).json()
    before = dict(visitor.http.cookies)  # the session as it was, challenge and all
    token = visitor.token(pair.a.url)
    body = {"purpose": "sign-in", "credential": authenticator.assert_(options)}
    first = visitor.http.post(
        f"{pair.a.url}/-/passkeys/authenticate", json=body, headers={"x-csrftoken": token}
    )
    assert first.status_code == 200, first.text
    replay = visitors(before).http
    body["credential"] = authenticator.assert_(options)  # a higher count, the same challenge
    again = replay.post(
        f"{pair.b.url}/-/passkeys/authenticate", json=body, headers={"x-csrftoken": token}
    )
    assert again.status_code == 400, again.text
    if pair.a.env.get("DOORMAN_SESSIONS") == "cookie":  # the old cookie still held it
        assert "used already" in again.json()["error"]
    assert replay.get(f"{pair.b.url}/-/whoami").json()["actor"] is None
