"""``doorman db dump`` and ``load`` carry the second factors: TOTP, recovery codes, passkeys.

Between SQLite and PostgreSQL and back, the same dump; and what was loaded
works: the TOTP secret gives the same codes (its last step kept, so no replay
either), an unused recovery code signs in once, the passkey is there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyotp
import pytest

from doorman.accounts.totp import STEP
from doorman.core import Doorman
from doorman.db import connect
from doorman.db.schema import passkeys_table

from .test_cli import Invoke, _fill, fails, ok, with_doorman
from .test_cli import clean_environment as clean_environment  # fixtures, used by name
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli
from .test_cli import fresh_postgres_url as fresh_postgres_url

#: The CLI's Doorman hashes with the OWASP parameters: their cost is not the point here.
pytestmark = pytest.mark.usefixtures("cheap_default_hasher")

T0 = 1_700_000_015.0
PASSKEY = {
    "credential_id": "Y3JlZGVudGlhbC1pZA",
    "user_handle": "dXNlci1oYW5kbGU",
    "public_key": "pQECAyYgASFYIA",
    "sign_count": 7,
    "name": "laptop",
    "transports": "internal,hybrid",
    "aaguid": "00000000-0000-0000-0000-000000000000",
    "backup_eligible": True,
    "backed_up": False,
    "created_at": 1_700_000_000.0,
    "last_used_at": None,
}


def _add_factors(db_path: str) -> tuple[str, list[str]]:
    """TOTP and recovery codes for alice, a passkey for bob: alice's secret and codes."""

    async def add(d: Doorman) -> tuple[str, list[str]]:
        alice, bob = await d.users.require("alice"), await d.users.require("bob")
        secret = await d.totp.start(alice)
        assert await d.totp.confirm(alice, pyotp.TOTP(secret).at(T0), at=T0)
        codes = await d.recovery_codes.regenerate(alice)
        assert await d.recovery_codes.use(alice, codes[0])
        async with connect(d.engine, write=True) as connection:
            await connection.execute(passkeys_table.insert().values(user_id=bob.id, **PASSKEY))
        return secret, codes

    return with_doorman(db_path, add)


def _works(db_path: str, secret: str, codes: list[str]) -> None:
    async def check(d: Doorman) -> None:
        alice, bob = await d.users.require("alice"), await d.users.require("bob")
        totp = pyotp.TOTP(secret)
        assert not await d.totp.verify(alice, totp.at(T0), at=T0)  # the last step came along
        assert await d.totp.verify(alice, totp.at(T0 + STEP), at=T0 + STEP)
        assert not await d.recovery_codes.use(alice, codes[0])  # used before the dump
        assert await d.recovery_codes.use(alice, codes[1])
        assert (await d.second_factors(bob)).passkeys == 1

    with_doorman(db_path, check)


def test_second_factors_round_trip_through_sqlite(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    _fill(doorman_cli, db)
    secret, codes = _add_factors(db)
    dumped = ok(doorman_cli("db", "dump", "backup.json")) and (tmp_path / "backup.json").read_text()
    data = json.loads(dumped)
    assert [r["username"] for r in data["totp"]] == ["alice"]
    assert len(data["recovery_codes"]) == 10 and [p["name"] for p in data["passkeys"]] == ["laptop"]
    assert not any(c in dumped or c.replace("-", "") in dumped for c in codes)
    other = str(tmp_path / "other.db")
    ok(doorman_cli("db", "load", "backup.json", "--db", other))
    assert ok(doorman_cli("db", "dump", "--db", other)).stdout == dumped
    _works(other, secret, codes)
    # Loaded again with --skip-existing: the users are kept, their factors not doubled.
    ok(doorman_cli("db", "load", "backup.json", "--db", other, "--skip-existing"))
    assert ok(doorman_cli("db", "dump", "--db", other)).stdout.count("laptop") == 1


def test_a_dump_without_second_factors_still_loads(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    _fill(doorman_cli, db)
    data = json.loads(ok(doorman_cli("db", "dump")).stdout)
    for kind in ("totp", "recovery_codes", "passkeys"):
        del data[kind]
    (tmp_path / "old.json").write_text(json.dumps(data))
    ok(doorman_cli("db", "load", "old.json", "--db", str(tmp_path / "other.db")))


def test_a_bad_factor_record_loads_nothing(doorman_cli: Invoke, db: str, tmp_path: Path) -> None:
    _fill(doorman_cli, db)
    _add_factors(db)
    data = json.loads(ok(doorman_cli("db", "dump")).stdout)
    data["totp"][0]["last_step"] = "soon"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    fails(doorman_cli("db", "load", "bad.json", "--db", str(tmp_path / "o.db")), "totp[0]")
    data["totp"][0]["last_step"] = None
    data["passkeys"][0]["username"] = "ghost"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    fails(doorman_cli("db", "load", "bad.json", "--db", str(tmp_path / "o.db")), "'ghost'")


@pytest.mark.postgres
def test_second_factors_between_sqlite_and_postgres(
    doorman_cli: Invoke, db: str, tmp_path: Path, fresh_postgres_url: str
) -> None:
    _fill(doorman_cli, db)
    secret, codes = _add_factors(db)
    ok(doorman_cli("db", "dump", "sqlite.json"))
    dumped = (tmp_path / "sqlite.json").read_text()
    ok(doorman_cli("db", "load", "sqlite.json", "--db", fresh_postgres_url))
    assert ok(doorman_cli("db", "dump", "--db", fresh_postgres_url)).stdout == dumped
    _works(fresh_postgres_url, secret, codes)
    assert time.time() > T0
