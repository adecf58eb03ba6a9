"""How a person signed in, told to proxies: ``auth_methods`` on ``/-/whoami``,
``X-Doorman-Auth-Methods`` on ``/-/auth``, and ``/-/auth?require=``.

Every answer is checked against the full stack's, byte for byte (the fast path
and its kept answers must not tell them apart), and a kept answer of one
session must never be handed to another session of the same user.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from doorman.auth.auth_methods import meets, requirements
from doorman.testing import session_cookie_for

from .test_fast_auth import (
    PASSWORD,
    World,
    again_and_again,
    ask,
    headers_of,
    nothing,
    same_answer,
    sign_in,
    world,
)

pytestmark = pytest.mark.anyio

METHODS = b"x-doorman-auth-methods"


async def cookie_with(w: World, methods: list[str]) -> list[tuple[bytes, bytes]]:
    name, value = await session_cookie_for(w.app, "alice", doorman=w.doorman, methods=methods)
    return [(b"cookie", f"{name}={value}".encode())]


@pytest.mark.parametrize("sessions", ["cookie", "db"])
async def test_a_password_session_says_pwd(tmp_path: Path, sessions: str) -> None:
    async with world(tmp_path, sessions=sessions) as w:

        async def signed_in() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w))]

        ok = await same_answer(w, signed_in)
        assert ok[0] == 200 and headers_of(ok)[METHODS] == b"pwd"
        body = json.loads((await same_answer(w, signed_in, path="/-/whoami"))[2])
        assert body["auth_methods"] == ["pwd"] and body["actor"]["id"] == "alice"
        assert json.loads((await same_answer(w, nothing, path="/-/whoami"))[2]) == {"actor": None}


async def test_methods_given_to_login_are_told(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        for methods, header in ((["pwd", "otp"], b"pwd,otp"), (["hwk", "user"], b"hwk,user")):
            cookie = await cookie_with(w, methods)
            assert headers_of(await again_and_again(w, cookie))[METHODS] == header
            whoami = await again_and_again(w, cookie, path="/-/whoami")
            assert json.loads(whoami[2])["auth_methods"] == methods
        old = await cookie_with(w, [])  # a session from before methods were kept
        assert headers_of(await again_and_again(w, old))[METHODS] == b""


async def test_tokens_say_nothing_and_basic_says_pwd(tmp_path: Path) -> None:
    async with world(tmp_path, basic_auth=True) as w:
        _, text = await w.doorman.tokens.create(await w.doorman.users.require("alice"), name="x")
        bearer = [(b"authorization", f"Bearer {text}".encode())]
        assert (
            json.loads((await again_and_again(w, bearer, path="/-/whoami"))[2])["auth_methods"]
            == []
        )
        assert headers_of(await again_and_again(w, bearer))[METHODS] == b""
        assert (await again_and_again(w, bearer, query=b"require=mfa"))[0] == 403
        pair = base64.b64encode(f"alice:{PASSWORD}".encode())
        basic = [(b"authorization", b"Basic " + pair)]
        assert headers_of(await again_and_again(w, basic))[METHODS] == b"pwd"
        assert (await again_and_again(w, basic, query=b"require=otp"))[0] == 403


REQUIRED = {
    # session's methods -> the requirements it meets
    ("pwd",): set(),
    ("pwd", "otp"): {"otp", "mfa"},
    ("pwd", "hwk"): {"hwk", "mfa"},
    ("hwk", "user"): {"hwk", "mfa"},
    ("hwk",): {"hwk"},  # a passkey that did not verify the person: one factor
    ("otp",): {"otp"},
    (): set(),
}


async def test_require_answers_as_the_full_stack_does(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        for methods, met in REQUIRED.items():
            cookie = await cookie_with(w, list(methods))
            for need in ("otp", "hwk", "mfa"):
                answer = await again_and_again(w, cookie, query=f"require={need}".encode())
                assert answer[0] == (200 if need in met else 403), (methods, need)
                if need not in met:
                    assert answer[2] == b"A second factor is required\n"
                    assert METHODS not in headers_of(answer)
            both = await again_and_again(w, cookie, query=b"require=otp,mfa&rd=/x")
            assert both[0] == (200 if {"otp", "mfa"} <= met else 403)
        # Signed out, a requirement changes nothing: 401, or the way to the login page.
        assert (await same_answer(w, nothing, query=b"require=mfa"))[0] == 401
        html = [(b"accept", b"text/html")]

        async def browser() -> list[tuple[bytes, bytes]]:
            return html

        assert (await same_answer(w, browser, query=b"require=mfa"))[0] == 302


@pytest.mark.parametrize(
    "query",
    [
        b"require=",
        b"require=pwd",
        b"require=MFA",
        b"require=mfa,",
        b"require=mfa&require=x",
        b"require=%ff",
        b"require=mfa%00",
        b"require=" + b"a" * 5000,
    ],
)
async def test_a_bad_require_is_a_400_for_everyone(tmp_path: Path, query: bytes) -> None:
    async with world(tmp_path) as w:
        cookie = await cookie_with(w, ["pwd", "otp"])
        for headers in (cookie, [], [(b"accept", b"text/html")]):
            answer = await again_and_again(w, headers, query=query)
            assert answer[0] == 400 and b"otp, hwk or mfa" in answer[2]


async def test_a_kept_answer_is_never_another_sessions(tmp_path: Path) -> None:
    """Two sessions of one user, one with a second factor: each gets its own answer,
    asked in turn, again and again, after the other's was kept."""
    async with world(tmp_path, sessions="db") as w:
        password_only = [(b"cookie", await sign_in(w))]
        with_otp = await cookie_with(w, ["pwd", "otp"])
        for _ in range(3):
            for cookie, header, mfa in ((with_otp, b"pwd,otp", 200), (password_only, b"pwd", 403)):
                assert headers_of(await ask(w.app, cookie))[METHODS] == header
                assert (await ask(w.app, cookie, query=b"require=mfa"))[0] == mfa
                assert (await ask(w.full, cookie, query=b"require=mfa"))[0] == mfa
            whoami = await ask(w.app, password_only, path="/-/whoami")
            assert json.loads(whoami[2])["auth_methods"] == ["pwd"]


def test_requirements_and_meets() -> None:
    assert requirements(b"") == frozenset()
    assert requirements(b"rd=/x") == frozenset()
    assert requirements(b"require=mfa&require=otp") == {"mfa", "otp"}
    assert requirements(b"require=") is None
    assert not meets(["pwd", "pwd"], ["mfa"])  # the same proof twice is one
    assert meets(["email", "otp"], ["mfa"])
