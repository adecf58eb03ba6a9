"""Attacks on two-factor sign-in found by a black-box review (issue 16), each kept as a test.

A stolen password must not do what the password and a second factor do
together, whichever door it is tried at.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pyotp
import pytest

from .helpers import client
from .test_fast_auth import PASSWORD, World, again_and_again, ask, world

pytestmark = pytest.mark.anyio


def basic(username: str) -> list[tuple[bytes, bytes]]:
    pair = base64.b64encode(f"{username}:{PASSWORD}".encode())
    return [(b"authorization", b"Basic " + pair)]


async def turn_on_totp(w: World, username: str) -> None:
    user = await w.doorman.users.require(username)
    secret = await w.doorman.totp.start(user)
    assert await w.doorman.totp.confirm(user, pyotp.TOTP(secret).now())


async def basic_actor(w: World, username: str) -> object:
    """Who HTTP Basic with ``username``'s password is, on the fast path and the full stack."""
    whoami = await again_and_again(w, basic(username), path="/-/whoami")
    return json.loads(whoami[2])["actor"]


async def test_http_basic_is_no_way_around_a_second_factor(tmp_path: Path) -> None:
    """With ``basic_auth`` on, a password alone once signed in an account with an
    authenticator app: /-/auth let it through to every app, and /-/account/two-factor
    turned the app off and handed out new recovery codes."""
    async with world(tmp_path, basic_auth=True) as w:
        assert await basic_actor(w, "alice") is not None  # cached: a verified pair
        await turn_on_totp(w, "alice")
        assert await basic_actor(w, "alice") is None  # the cached pair too
        assert (await again_and_again(w, basic("alice")))[0] == 401
        regenerate = await ask(w.full, basic("alice"), method="POST", path="/-/account/two-factor")
        assert regenerate[0] in (401, 403)


async def test_http_basic_does_not_skip_the_enrolment_the_policy_asks(tmp_path: Path) -> None:
    """Under ``require_two_factor = "admins"`` an admin with no factor must enrol before
    reaching anything; HTTP Basic reached /-/admin with the password alone."""
    async with world(tmp_path, basic_auth=True, require_two_factor="admins") as w:
        await w.doorman.create_user("root", PASSWORD, admin=True)
        assert await basic_actor(w, "root") is None
        assert (await ask(w.full, basic("root"), path="/-/admin"))[0] in (302, 303, 401)
        assert await basic_actor(w, "alice") is not None  # not covered: a password is enough


async def pending_enrolment(browser: object, username: str) -> str:
    """A sign-in of ``username`` held up to enrol: the secret its page offers."""
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]  # type: ignore[attr-defined]
    answer = await browser.post(  # type: ignore[attr-defined]
        "/-/login",
        json={"username": username, "password": PASSWORD},
        headers={"x-csrftoken": token},
    )
    assert answer.json() == {"two_factor": "/-/login/two-factor"}, answer.text
    page = await browser.get("/-/login/two-factor", headers={"accept": "application/json"})  # type: ignore[attr-defined]
    uri = page.json()["two_factor"]["otpauth_uri"]
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]


async def test_an_enrolment_secret_is_shown_to_one_session_only(tmp_path: Path) -> None:
    """Under the policy, every sign-in held up to enrol was shown the same waiting secret:
    someone with the password alone read it, waited for the owner to set up their app
    with it, and then had their second factor too, for good."""
    async with world(tmp_path, require_two_factor="everyone") as w:
        base = "https://auth.example.com"
        async with client(w.app, base_url=base) as thief, client(w.app, base_url=base) as owner:
            seen = await pending_enrolment(thief, "alice")
            offered = await pending_enrolment(owner, "alice")
            assert offered != seen
            token = (await owner.get("/-/whoami?csrf=1")).json()["csrftoken"]
            done = await owner.post(
                "/-/login/two-factor",
                json={"code": pyotp.TOTP(offered).now()},
                headers={"x-csrftoken": token},
            )
            assert done.status_code == 200, done.text
            token = (await thief.get("/-/whoami?csrf=1")).json()["csrftoken"]
            stolen = await thief.post(
                "/-/login/two-factor",
                json={"code": pyotp.TOTP(seen).now()},
                headers={"x-csrftoken": token},
            )
            assert stolen.status_code == 401, stolen.text


@pytest.mark.parametrize("action", ["rename", "remove"])
@pytest.mark.parametrize("passkey_id", ["9223372036854775808", "99999999999999999999999"])
async def test_a_passkey_id_past_the_databases_integers_is_a_404(
    tmp_path: Path, action: str, passkey_id: str
) -> None:
    """``/-/passkeys/{id}/...`` took any number of digits to the database: a 500."""
    async with world(tmp_path) as w, client(w.app, base_url="https://auth.example.com") as alice:
        token = (await alice.get("/-/whoami?csrf=1")).json()["csrftoken"]
        headers = {"x-csrftoken": token}
        body = {"username": "alice", "password": PASSWORD}
        assert (await alice.post("/-/login", json=body, headers=headers)).status_code == 200
        token = (await alice.get("/-/whoami?csrf=1")).json()["csrftoken"]
        path = f"/-/passkeys/{passkey_id}/{action}"
        answer = await alice.post(path, json={"name": "x"}, headers={"x-csrftoken": token})
        assert answer.status_code == 404, answer.text


async def test_the_policy_keeps_the_last_factor_of_those_it_covers(tmp_path: Path) -> None:
    """A passkey that is a covered person's last factor cannot be removed; their only
    authenticator app could be turned off, and the account was back to a password."""
    async with (
        world(tmp_path, require_two_factor="everyone") as w,
        client(w.app, base_url="https://auth.example.com") as alice,
    ):
        secret = await pending_enrolment(alice, "alice")
        token = (await alice.get("/-/whoami?csrf=1")).json()["csrftoken"]
        code = {"code": pyotp.TOTP(secret).now()}
        done = await alice.post("/-/login/two-factor", json=code, headers={"x-csrftoken": token})
        assert done.status_code == 200, done.text
        token = (await alice.get("/-/whoami?csrf=1")).json()["csrftoken"]
        off = await alice.post(
            "/-/account/two-factor", json={"action": "disable"}, headers={"x-csrftoken": token}
        )
        assert off.status_code == 409, off.text
        user = await w.doorman.users.require("alice")
        assert (await w.doorman.second_factors(user)).totp
