"""Look-alike usernames: none registers beside the name it imitates, by any way in.

Issue 12: "admin" with a Cyrillic a (U+0430) and with a dotless i (U+0131)
registered beside "admin". Names are escaped here, as ruff asks of look-alikes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from doorman._lookalikes import lookalike_key, mixed_scripts
from doorman.accounts.passwords import PasswordHasher
from doorman.accounts.users import check_new_username
from doorman.core import Doorman
from doorman.db import connect, create_engine
from doorman.db.migrations import migrate
from doorman.exceptions import AccountError, UsernameTaken, UsernameTooSimilar
from doorman.transfer import dump, load

from .conftest import SECRET
from .servers import (
    JSON,
    REQUEST_S,
    add_users,
    doorman_cli,
    login_form,
    post_form,
    running,
    sign_in,
    start_server,
    with_cookie,
)

PASSWORD = "correct horse battery staple"
CYRILLIC_A_ADMIN = "\u0430dmin"  # mixed: Latin and Cyrillic
DOTLESS_ADMIN = "adm\u0131n"  # all Latin
CYRILLIC_COCO = "\u0441\u043e\u0441\u043e"  # all Cyrillic: "coco"
LOOKALIKES_OF_ADMIN = [DOTLESS_ADMIN, "adrnin", "ADM\u0131N"]
#: Letters that show as nothing: a Hangul filler, as typed and in its other forms.
FILLED_ADMINS = ["admin\u3164", "\uffa0admin", "ad\u115fmin", "admin\u1160"]
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# -- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [*LOOKALIKES_OF_ADMIN, *FILLED_ADMINS, CYRILLIC_A_ADMIN, "Admin", "\uff41dmin"]
)
def test_names_that_read_as_admin_share_its_key(name: str) -> None:
    assert lookalike_key(name) == lookalike_key("admin")


@pytest.mark.parametrize("name", [*FILLED_ADMINS, "\u3164"])
def test_a_new_name_holds_nothing_invisible(name: str) -> None:
    """Hangul fillers are letters of the Hangul script, which may go with Latin (Korean),
    and pass every other check: "admin" and a filler read as "admin"."""
    with pytest.raises(AccountError, match="show as nothing"):
        check_new_username(name)


@pytest.mark.parametrize(
    ("first", "second"),
    [("bill", "biII"), ("bill", "bi1l"), ("bob", "b0b"), ("coco", CYRILLIC_COCO)],
)
def test_names_that_read_alike_share_a_key(first: str, second: str) -> None:
    assert lookalike_key(first) == lookalike_key(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [("admin", "adm\u00edn"), ("alice", "alicia"), ("bob", "rob"), ("\u5c71\u7530", "\u5c71")],
)
def test_names_that_read_differently_have_different_keys(first: str, second: str) -> None:
    assert lookalike_key(first) != lookalike_key(second)


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "user_1.x@example+tag-2",
        "\u0414\u043c\u0438\u0442\u0440\u0438\u0439",  # Cyrillic
        "\u03b5\u03bb\u03ad\u03bd\u03b7",  # Greek
        "\u5c71\u7530\u305f\u308d\u3046",  # Han and Hiragana: Japanese
        "\ud64d\uae38\ub3d9",  # Hangul
        DOTLESS_ADMIN,  # Latin: a look-alike, but not mixed
    ],
)
def test_one_script_per_name(name: str) -> None:
    assert mixed_scripts(name) == frozenset()


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        (CYRILLIC_A_ADMIN, {"LATIN", "CYRILLIC"}),
        ("\u0399oannis", {"LATIN", "GREEK"}),  # a Greek capital iota
        ("user\u0661", {"LATIN", "ARABIC"}),  # an Arabic-Indic digit
    ],
)
def test_mixed_scripts_are_named(name: str, scripts: set[str]) -> None:
    assert mixed_scripts(name) == scripts


@given(st.text(max_size=40))
def test_any_text_is_a_username_or_an_account_error(text: str) -> None:
    try:
        name = check_new_username(text)
    except AccountError:
        return
    assert len(lookalike_key(name)) == 64 and not mixed_scripts(name)


# -- every way in ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def doorman(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Doorman]:
    """A started Doorman on a new SQLite file, or on this run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        db = str(tmp_path / "lookalikes.db")
    else:
        db = request.getfixturevalue("postgres_url")
        engine = create_engine(db)
        try:
            await migrate(engine)
            async with connect(engine, write=True) as connection:
                await connection.execute(sa.text("DELETE FROM doorman_users"))
        finally:
            await engine.dispose()
    found = Doorman(
        db,
        secret=SECRET,
        hasher=PasswordHasher(time_cost=1, memory_cost=1024),
        entry_points=False,
    )
    await found.startup()
    try:
        yield found
    finally:
        await found.close()


@pytest.mark.anyio
async def test_a_lookalike_of_an_existing_user_is_refused_without_naming_it(
    doorman: Doorman,
) -> None:
    await doorman.create_user("Admin", PASSWORD, admin=True)
    for name in LOOKALIKES_OF_ADMIN:
        with pytest.raises(UsernameTooSimilar) as refused:
            await doorman.create_user(name, PASSWORD)
        assert "Admin" not in str(refused.value) and "too similar" in str(refused.value)
    with pytest.raises(UsernameTaken) as taken:
        await doorman.create_user("ADMIN", PASSWORD)
    assert not isinstance(taken.value, UsernameTooSimilar)
    with pytest.raises(AccountError, match="one script"):
        await doorman.create_user(CYRILLIC_A_ADMIN, PASSWORD)
    await doorman.create_user("coco", PASSWORD)
    with pytest.raises(UsernameTooSimilar):
        await doorman.create_user(CYRILLIC_COCO, PASSWORD)
    await doorman.create_user("\u0414\u043c\u0438\u0442\u0440\u0438\u0439", PASSWORD)
    assert await doorman.users.count() == 3


@pytest.mark.anyio
async def test_two_lookalikes_created_at_once_make_one_user(doorman: Doorman) -> None:
    """The check before the insert cannot race: the look-alike key is unique in the table."""
    for attempt in range(5):
        names = [f"admin{attempt}", f"adm\u0131n{attempt}", f"adrnin{attempt}"]
        results = await asyncio.gather(
            *(doorman.users.create(name, password_hash=None) for name in names),
            return_exceptions=True,
        )
        made = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(made) == 1 and all(isinstance(r, UsernameTaken) for r in refused), results


@pytest.mark.anyio
async def test_upgrading_keeps_lookalikes_that_were_there_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    engine = create_engine(str(tmp_path / "old.db"))
    insert = sa.text(
        "INSERT INTO doorman_users (id, username, username_key, created_at) "
        "VALUES (:id, :name, :name, :id)"
    )
    try:
        await migrate(engine, "0002")
        async with connect(engine, write=True) as connection:
            for user_id, name in enumerate(["admin", DOTLESS_ADMIN, "bob"], start=1):
                await connection.execute(insert, {"id": user_id, "name": name})
        await migrate(engine)
        doorman = Doorman(engine=engine, secret=SECRET, entry_points=False)
        assert [u.username for u in await doorman.users.list()] == ["admin", DOTLESS_ADMIN, "bob"]
        with pytest.raises(UsernameTooSimilar):
            await doorman.users.create("adrnin")
        with pytest.raises(UsernameTooSimilar):
            await doorman.users.create("b0b")
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_a_dump_loads_with_its_lookalikes_kept(doorman: Doorman, tmp_path: Path) -> None:
    """db load moves existing accounts: look-alikes an older doorman let in come along."""
    data = await dump(doorman.engine)
    older = {"username": "admin", "email": None, "password_hash": None, "is_admin": True}
    older |= {"is_active": True, "session_version": 0, "last_login": None, "groups": []}
    data["users"] = [
        {**older, "created_at": 1.0},
        {**older, "username": DOTLESS_ADMIN, "is_admin": False, "created_at": 2.0},
    ]
    assert (await load(doorman.engine, data)).users == 2
    with pytest.raises(UsernameTooSimilar):
        await doorman.users.create("adrnin")


# -- on a real server ------------------------------------------------------------------------


def register(url: str, username: str) -> httpx.Response:
    csrf, token = login_form(url)
    form = {"username": username, "password": PASSWORD, "password2": PASSWORD, "csrftoken": token}
    return httpx.post(
        url + "/-/register", data=form, headers=with_cookie(None, csrf, **JSON), timeout=REQUEST_S
    )


@pytest.mark.e2e
def test_lookalikes_of_admin_do_not_register(tmp_path: Path) -> None:
    db = tmp_path / "server" / "doorman.db"
    server = start_server(tmp_path / "server", db=str(db), allow_registration="true")
    with running(server):
        add_users(str(db), "admin", admins=("admin",))
        for name in (CYRILLIC_A_ADMIN, DOTLESS_ADMIN, FILLED_ADMINS[0]):
            refused = register(server.url, name)
            assert refused.status_code == 400, refused.text
            errors: list[Any] = refused.json()["errors"]
            assert len(errors) == 1 and "admin" not in errors[0].replace(name, "")
        made = register(server.url, "alice")
        assert made.status_code == 200 and made.json()["actor"]["username"] == "alice"

        admin = sign_in(server.url, "admin")
        fields = {"username": "adrnin", "password": PASSWORD, "password2": PASSWORD}
        refused = post_form(server.url, "/-/admin/users", admin, fields)
        assert refused.status_code == 400 and "too similar" in refused.json()["errors"][0]

        cli = doorman_cli(
            server, "users", "create", "al\u0131ce", "--password-stdin", input=PASSWORD
        )
        assert cli.returncode == 1 and "Traceback" not in cli.stderr
        assert cli.stderr.strip().splitlines() == [
            "Error: the username 'al\u0131ce' is too similar to an existing one"
        ]
