"""doorman.testing for users' tests: the signed-in client, and the pytest plugin's fixtures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware

from doorman import AuthMiddleware, PasswordHasher, SessionMiddleware
from doorman.core import Doorman
from doorman.exceptions import AuthenticationFailed
from doorman.stores import SessionStore
from doorman.testing import StoreContract, session_cookie_for, signed_in_client

from .conftest import SECRET
from .helpers import client, migrated_sqlite
from .test_server import running

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parent.parent / "docs" / "testing.md"


async def actor_app(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app that answers with the actor's id, or 401."""
    actor = scope["actor"]
    await send(
        {
            "type": "http.response.start",
            "status": 200 if actor else 401,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": (actor["id"] if actor else "").encode()})


@pytest.fixture
async def doorman(tmp_path: Path) -> Any:
    found = Doorman(
        migrated_sqlite(tmp_path / "d.db"),
        secret=SECRET,
        hasher=PasswordHasher(time_cost=1, memory_cost=1024),
        entry_points=False,
    )
    await found.startup()
    await found.create_user("alice")
    yield found
    await found.close()


async def test_a_signed_in_client_in_every_store(doorman: Doorman, any_store: SessionStore) -> None:
    app = SessionMiddleware(AuthMiddleware(actor_app, doorman), secret=SECRET, store=any_store)
    async with signed_in_client(app, "alice") as signed_in:
        assert (await signed_in.get("/")).text == "alice"
    async with client(app) as anonymous:
        assert (await anonymous.get("/")).status_code == 401


async def test_it_is_a_real_sign_in_that_ends_like_one(doorman: Doorman) -> None:
    app = SessionMiddleware(AuthMiddleware(actor_app, doorman), secret=SECRET)
    alice = await doorman.users.by_username("alice")
    assert alice is not None
    async with signed_in_client(app, alice) as signed_in:
        assert (await signed_in.get("/")).status_code == 200
        [signin] = await doorman.signins.list(alice)
        assert signin.user_agent == "doorman.testing"
        await doorman.end_sessions(alice)
        assert (await signed_in.get("/")).status_code == 401


async def test_middleware_given_to_starlette_is_found(doorman: Doorman) -> None:
    inner = Starlette(
        middleware=[
            Middleware(SessionMiddleware, secret_key=SECRET),  # Starlette's spelling and cookie
            Middleware(AuthMiddleware, doorman=doorman),
        ]
    )
    inner.mount("/", actor_app)
    name, _ = await session_cookie_for(inner, "alice")
    assert name == "session"
    assert inner.middleware_stack is None  # the app's own stack is left for its first request
    async with signed_in_client(inner, "alice", base_url="https://app.example.com") as signed_in:
        assert (await signed_in.get("/x")).text == "alice"


async def test_a_fastapi_dependency_sees_the_user(doorman: Doorman) -> None:
    app = FastAPI()

    def actor(request: Request) -> Any:
        return request.scope["actor"]

    @app.get("/me")
    async def me(found: Any = Depends(actor)) -> Any:  # noqa: B008  (FastAPI's way)
        return {"id": found and found["id"]}

    app.add_middleware(AuthMiddleware, doorman=doorman)
    app.add_middleware(SessionMiddleware, secret=SECRET)
    async with signed_in_client(app, "alice") as signed_in:
        assert (await signed_in.get("/me")).json() == {"id": "alice"}


async def test_the_sign_in_server_itself(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        await server.doorman.create_user("bob")
        async with signed_in_client(server.app, "bob") as signed_in:
            assert (await signed_in.get("/-/whoami")).json()["actor"]["id"] == "bob"


async def test_what_cannot_be_found_or_signed_in_says_so(doorman: Doorman) -> None:
    app = SessionMiddleware(AuthMiddleware(actor_app, doorman), secret=SECRET)
    with pytest.raises(LookupError, match="no user 'nobody'"):
        await session_cookie_for(app, "nobody")
    with pytest.raises(LookupError, match=r"SessionMiddleware.*middleware="):
        await session_cookie_for(AuthMiddleware(actor_app, doorman), "alice")
    with pytest.raises(LookupError, match=r"AuthMiddleware.*doorman="):
        await session_cookie_for(SessionMiddleware(actor_app, secret=SECRET), "alice")
    name, value = await session_cookie_for(
        SessionMiddleware(actor_app, secret=SECRET), "alice", doorman=doorman
    )
    assert name == "doorman_session" and value
    alice = await doorman.users.by_username("alice")
    assert alice is not None
    await doorman.users.set_active(alice, False)
    with pytest.raises(AuthenticationFailed):
        await session_cookie_for(app, "alice")


def test_the_store_contract_is_still_importable_from_doorman_testing() -> None:
    assert StoreContract.__module__ == "doorman.testing.contract"


# -- the pytest plugin, as a user's test run uses it ----------------------------

FIXTURE_CHECKS = """
import os
import pytest

pytestmark = pytest.mark.anyio
seen = []


def test_a_new_migrated_database_per_test(doorman_db):
    seen.append(doorman_db)
    assert os.path.exists(doorman_db)


def test_another_one(doorman_db):
    seen.append(doorman_db)
    assert len(set(seen)) == 2


async def test_doorman_on_it(doorman, doorman_db):
    user = await doorman.create_user("carol", "correct horse battery staple")
    found = await doorman.authenticate("carol", "correct horse battery staple", client=None)
    assert found == user
    assert doorman.engine.url.database == doorman_db
"""

POSTGRES_CHECKS = """
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def doorman_db(doorman_postgres_db):
    return doorman_postgres_db


async def test_on_postgres(doorman):
    assert doorman.engine.dialect.name == "postgresql"
    await doorman.create_user("dave")
    assert [u.username for u in await doorman.users.list()] == ["dave"]
"""


PYTEST_QUIET = ("-p", "no:cacheprovider")


def run_pytest(directory: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """pytest in a process of its own, as a user's project runs it: what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-W", "error", *PYTEST_QUIET, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return result.stdout + result.stderr


def code_blocks(text: str) -> dict[str, str]:
    """The docs' Python blocks that start with ``# <file name>``, the first of each name."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", text, re.S)
    return {name: body for name, body in reversed(blocks)}


@pytest.mark.e2e
def test_the_example_of_the_docs_and_the_fixtures(tmp_path: Path) -> None:
    """The docs' two files as they are, a broken copy of the test file, and the fixtures."""
    files = code_blocks(DOCS.read_text())
    assert set(files) == {"conftest.py", "test_profile.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    broken = files["test_profile.py"].replace('{"hello": actor["id"]}', '{"hello": "nobody"}')
    assert broken != files["test_profile.py"]
    (tmp_path / "test_broken_profile.py").write_text(broken)
    (tmp_path / "test_fixtures.py").write_text(FIXTURE_CHECKS)
    output = run_pytest(tmp_path)
    assert "1 failed, 8 passed" in output, output
    assert "FAILED test_broken_profile.py::test_profile_greets_the_user" in output, output


@pytest.mark.e2e
def test_the_postgres_fixture(tmp_path: Path, postgres_url: str) -> None:
    (tmp_path / "test_pg.py").write_text(POSTGRES_CHECKS)
    # A database of this run to connect to; the fixture makes its own beside it.
    env = {"DOORMAN_TEST_POSTGRES_URL": postgres_url}
    output = run_pytest(tmp_path, "-p", "doorman.testing.pytest_plugin", env=env)
    assert "1 passed" in output, output
