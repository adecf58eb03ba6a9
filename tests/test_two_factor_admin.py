# ruff: noqa: F811  (fixtures imported from test_cli and test_server_admin)
"""An admin's view of second factors: the user page, the users list, the reset, and the CLI's.

The factors are put straight into their tables: the reset must take away what
is there, whoever put it there.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
import sqlalchemy as sa

from doorman.core import Doorman
from doorman.db.schema import passkeys_table, recovery_codes_table, totp_table
from doorman.db.transaction import connect

from .test_cli import (  # noqa: F401  (fixtures)
    Invoke,
    clean_environment,
    create,
    db,
    doorman_cli,
    fails,
    fresh_postgres_url,
    ok,
    with_doorman,
)
from .test_server_admin import (  # noqa: F401  (fixtures)
    HTML,
    JSON,
    Server,
    post,
    server,
    signed_in,
    user,
)

#: The CLI's Doorman hashes with the OWASP parameters: their cost is not the point here.
pytestmark = pytest.mark.usefixtures("cheap_default_hasher")


async def give_factors(doorman: Doorman, user_id: int, *, passkeys: int = 1) -> None:
    """TOTP on, ``passkeys`` passkeys and three recovery codes (one used), in the tables."""
    now = time.time()
    async with connect(doorman.engine, write=True) as connection:
        await connection.execute(
            totp_table.insert().values(
                user_id=user_id, secret="JBSWY3DPEHPK3PXP", created_at=now, confirmed_at=now
            )
        )
        for used in (None, None, now):
            code_hash = secrets.token_hex(32)
            await connection.execute(
                recovery_codes_table.insert().values(
                    user_id=user_id, code_hash=code_hash, created_at=now, used_at=used
                )
            )
        for number in range(passkeys):
            await connection.execute(
                passkeys_table.insert().values(
                    user_id=user_id,
                    credential_id=secrets.token_urlsafe(32),
                    user_handle=f"handle-{user_id}",
                    public_key="pQECAyYgASFY",
                    name=f"key {number}",
                    created_at=now,
                )
            )


async def rows_of(doorman: Doorman, user_id: int) -> int:
    count = 0
    async with connect(doorman.engine) as connection:
        for table in (totp_table, recovery_codes_table, passkeys_table):
            query = sa.select(sa.func.count()).where(table.c.user_id == user_id)
            count += (await connection.execute(query)).scalar_one()
    return count


async def reset_events(doorman: Doorman) -> list[Any]:
    await doorman.events.flush()
    return [e for e in await doorman.events.list() if e.kind == "two-factor-reset"]


# -- the admin pages ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_user_page_and_list_show_the_factors_and_reset_them(server: Server) -> None:
    bob = await user(server, "bob")
    await give_factors(server.doorman, bob.id, passkeys=2)
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert "TOTP, 2 passkeys, 2 recovery codes" in page.text
        assert 'action="/-/admin/users/bob/two-factor-reset"' in page.text
        detail = (await admin.get("/-/admin/users/bob", headers=JSON)).json()
        assert detail["two_factor"] == {
            "on": True,
            "totp": True,
            "passkeys": 2,
            "recovery_codes": 2,
        }
        listed = await admin.get("/-/admin/users", headers=HTML)
        assert (
            "TOTP, 2 passkeys, 2 recovery codes" in listed.text and "<td>none</td>" in listed.text
        )
        users = (await admin.get("/-/admin/users", headers=JSON)).json()["users"]
        by_name = {u["username"]: u["two_factor"]["on"] for u in users}
        assert by_name == {"alice": False, "bob": True, "root": False}

        done = await post(admin, "/-/admin/users/bob/two-factor-reset")
        assert done.status_code == 303
        assert done.headers["location"] == "/-/admin/users/bob?done=two-factor-reset"
        assert await rows_of(server.doorman, bob.id) == 0
        [event] = await reset_events(server.doorman)
        assert event.actor == "root" and event.user_id == bob.id
        assert event.detail["passkeys"] == 2 and event.detail["authenticator_app"] is True
        page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert "bob has no second factor." in page.text

        again = await post(admin, "/-/admin/users/bob/two-factor-reset")
        assert again.headers["location"].endswith("?done=two-factor-none")
        assert len(await reset_events(server.doorman)) == 1  # nothing taken, nothing logged


@pytest.mark.anyio
async def test_only_admins_reset_and_only_with_the_csrf_token(server: Server) -> None:
    bob = await user(server, "bob")
    await give_factors(server.doorman, bob.id)
    url = "/-/admin/users/bob/two-factor-reset"
    async with signed_in(server, "alice") as member:
        assert (await post(member, url)).status_code == 403
        assert (await member.get("/-/admin/users/bob", headers=HTML)).status_code == 403
    async with signed_in(server) as admin:
        assert (await admin.post(url, data={}, headers=HTML)).status_code == 403
        forged = await admin.post(url, data={"csrftoken": "x" * 43}, headers=HTML)
        assert forged.status_code == 403
        assert (await admin.post(url, json={}, headers=JSON)).status_code == 403
    assert await rows_of(server.doorman, bob.id) == 5  # TOTP, three codes, a passkey
    assert await reset_events(server.doorman) == []


# -- the command line ------------------------------------------------------------------


def cli_reset_round(doorman_cli: Invoke, database: str) -> None:
    env = {"DOORMAN_DB": database}
    ok(create(lambda *a, **k: doorman_cli(*a, env=env, **k), "bob"))
    ok(create(lambda *a, **k: doorman_cli(*a, env=env, **k), "carol"))
    bob_id = with_doorman(database, lambda d: _id_of(d, "bob"))
    with_doorman(database, lambda d: give_factors(d, bob_id))

    shown = ok(doorman_cli("users", "two-factor", "bob", env=env)).stdout
    assert shown == "bob: TOTP, 1 passkey, 2 recovery codes\n"
    listed = ok(doorman_cli("users", "list", env=env)).stdout
    assert "2FA" in listed.splitlines()[0]
    assert "TOTP, 1 passkey, 2 recovery codes" in listed
    as_json = json.loads(ok(doorman_cli("users", "list", "--json", env=env)).stdout)
    assert {u["username"]: u["two_factor"]["on"] for u in as_json} == {"bob": True, "carol": False}

    reset = ok(doorman_cli("users", "two-factor", "bob", "--reset", env=env)).stdout
    assert reset == "bob: second factors reset (had TOTP, 1 passkey, 2 recovery codes)\n"
    assert with_doorman(database, lambda d: rows_of(d, bob_id)) == 0
    [event] = with_doorman(database, reset_events)
    assert event.detail["via"] == "cli" and event.detail["passkeys"] == 1
    again = ok(doorman_cli("users", "two-factor", "bob", "--reset", "--json", env=env)).stdout
    assert json.loads(again) == {
        "username": "bob",
        "reset": True,
        "on": False,
        "totp": False,
        "passkeys": 0,
        "recovery_codes": 0,
    }
    assert len(with_doorman(database, reset_events)) == 1
    fails(doorman_cli("users", "two-factor", "nobody", env=env), "no user 'nobody'")
    fails(doorman_cli("users", "two-factor", "nobody", "--reset", env=env), "no user 'nobody'")


async def _id_of(doorman: Doorman, name: str) -> int:
    return (await doorman.users.require(name)).id


def test_the_cli_shows_and_resets_factors(doorman_cli: Invoke, db: str) -> None:
    cli_reset_round(doorman_cli, db)


@pytest.mark.postgres
def test_the_cli_resets_factors_on_postgres(
    doorman_cli: Invoke,
    fresh_postgres_url: str,
) -> None:
    ok(doorman_cli("db", "migrate", env={"DOORMAN_DB": fresh_postgres_url}))
    cli_reset_round(doorman_cli, fresh_postgres_url)


def test_the_cli_needs_a_username(doorman_cli: Invoke) -> None:
    result = doorman_cli("users", "two-factor")
    assert result.exit_code == 2 and "Missing argument 'USERNAME'" in result.output
