# ruff: noqa: F811  (the server fixture comes from test_server_admin)
"""Step-up with the second factors: changing them needs a recent proof, and a code from the
authenticator app, a recovery code or a passkey is such a proof, as the password is.

The clock of ``doorman.auth.step_up`` alone is moved forward (``later``): the
session stays valid, only its proof grows old.
"""

from __future__ import annotations

import time

import pyotp
import pytest

from .test_server_admin import (  # noqa: F401  (fixtures)
    HTML,
    JSON,
    Server,
    post,
    server,
    signed_in,
    token_of,
)
from .test_step_up import CONFIRM, Later, events, later  # noqa: F401  (fixture)

pytestmark = pytest.mark.anyio
TWO_FACTOR = "/-/account/two-factor"


async def turn_on_totp(server: Server, username: str) -> str:
    """An authenticator app on for ``username``, its last code taken a step ago; the secret."""
    user = await server.doorman.users.require(username)
    secret = await server.doorman.totp.start(user)
    before = time.time() - 30
    assert await server.doorman.totp.confirm(user, pyotp.TOTP(secret).at(before), at=before)
    return secret


async def test_a_stale_session_confirms_with_a_code_before_changing_its_factors(
    server: Server, later: Later
) -> None:
    async with signed_in(server, "alice") as alice:
        secret = await turn_on_totp(server, "alice")
        later.ahead = 400
        asked = await post(alice, TWO_FACTOR, {"action": "regenerate"})
        assert asked.status_code == 303 and asked.headers["location"].startswith(CONFIRM)
        user = await server.doorman.users.require("alice")
        assert (await server.doorman.second_factors(user)).recovery_codes == 0  # nothing made

        page = await alice.get(asked.headers["location"], headers=HTML)
        assert 'name="code"' in page.text  # the app's code is offered beside the password
        wrong = await post(alice, CONFIRM, {"code": "000000", "next": TWO_FACTOR})
        assert wrong.status_code == 400 and "not right" in wrong.text
        right = await post(alice, CONFIRM, {"code": pyotp.TOTP(secret).now(), "next": TWO_FACTOR})
        assert right.status_code == 303 and right.headers["location"] == TWO_FACTOR

        made = await post(alice, TWO_FACTOR, {"action": "regenerate"})
        assert made.status_code == 200
        assert (await server.doorman.second_factors(user)).recovery_codes == 10
        methods = (await alice.get("/-/whoami")).json()["auth_methods"]
        assert methods == ["pwd", "otp"]  # a proxy's require=mfa now lets this session by
        assert (await alice.get("/-/auth?require=mfa")).status_code == 200
    proofs = [e.detail for e in await events(server, "reauthenticated")]
    assert {"method": "otp"} in proofs


async def test_a_recovery_code_is_a_proof_once(server: Server, later: Later) -> None:
    async with signed_in(server, "bob") as bob:
        await turn_on_totp(server, "bob")
        user = await server.doorman.users.require("bob")
        (code, *_) = await server.doorman.recovery_codes.regenerate(user)
        later.ahead = 400
        assert (await post(bob, CONFIRM, {"code": code})).status_code == 303
        later.ahead = 800
        again = await post(bob, CONFIRM, {"code": code})
        assert again.status_code == 400  # spent


async def test_a_stale_session_cannot_add_or_remove_a_passkey(server: Server, later: Later) -> None:
    async with signed_in(server, "root") as root:
        later.ahead = 400
        headers = {**JSON, "x-csrftoken": await token_of(root)}
        for path in ("/-/passkeys/register/options", "/-/passkeys/register"):
            answer = await root.post(path, json={}, headers=headers)
            assert answer.status_code == 403, path
            assert answer.json()["step_up"].startswith(CONFIRM)
        removed = await post(root, "/-/passkeys/1/remove")
        assert removed.status_code == 303 and removed.headers["location"].startswith(CONFIRM)
