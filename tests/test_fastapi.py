"""The FastAPI dependencies with the real FastAPI: the example app of docs/fastapi.md."""

from __future__ import annotations

import contextlib
import re
import runpy
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket

from doorman import AuthMiddleware, Doorman, MemoryStore, PasswordHasher, SessionMiddleware
from doorman.integrations.fastapi import (
    Actor,
    CurrentActor,
    Refusal,
    SignedInActor,
    exception_handlers,
    requires,
)
from doorman.integrations.starlette import exception_handlers as starlette_handlers

from .conftest import SECRET
from .helpers import COOKIE, client, empty_accounts
from .test_protect import websocket

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fastapi_app.py"
PASSWORD = "correct horse battery staple"
FAST = {"time_cost": 1, "memory_cost": 1024}


@contextlib.asynccontextmanager
async def example_in(directory: Path) -> AsyncIterator[Any]:
    """The example's module namespace, its database in ``directory``/data, alice and root in it."""
    (directory / "data").mkdir()
    with pytest.MonkeyPatch.context() as patch:  # read once, as the module is run
        patch.setenv("DOORMAN_DB", str(directory / "data" / "accounts.db"))
        patch.setenv("DOORMAN_SECRET", SECRET)
        namespace = runpy.run_path(str(EXAMPLE))
    doorman: Doorman = namespace["doorman"]
    doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST)
    await doorman.startup()
    await with_people(doorman)
    yield namespace
    store = namespace["app"].user_middleware[0].kwargs["store"]  # SessionMiddleware's
    await store.close()
    await doorman.close()
    await doorman.engine.dispose()


async def with_people(doorman: Doorman) -> None:
    await doorman.create_user("alice", PASSWORD)
    await doorman.create_user("root", PASSWORD, admin=True)


@pytest.fixture(scope="module")
async def shared_example(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with example_in(tmp_path_factory.mktemp("shared")) as namespace:
        yield namespace


@pytest.fixture
async def example(shared_example: Any) -> Any:
    """The module's example, emptied, with alice and root again. Its session store (an
    SQLStore of its own engine, on the same file) keeps what it read under the file's
    sessions epoch, which the DELETEs move."""
    doorman: Doorman = shared_example["doorman"]
    await empty_accounts(doorman)
    await with_people(doorman)
    return shared_example


@pytest.fixture
async def own_example(tmp_path: Path) -> AsyncIterator[Any]:
    """The example, for this test alone: it may take its database away."""
    async with example_in(tmp_path) as namespace:
        yield namespace


async def sign_in(api: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await api.post("/login", json={"username": username, "password": PASSWORD})


def test_the_docs_show_the_example_that_is_tested() -> None:
    page = (ROOT / "docs" / "fastapi.md").read_text()
    example = re.findall(r"```python\n(.*?)```", page, flags=re.S)[0]
    assert example == EXAMPLE.read_text()


async def test_signed_out(example: Any) -> None:
    async with client(example["app"]) as api:
        assert (await api.get("/whoami")).json() == {"actor": None}
        notes = await api.get("/notes")
        assert notes.status_code == 401 and notes.json() == {"detail": "Sign in to continue."}
        assert notes.headers["cache-control"] == "no-store"
        admin = await api.get("/admin-stuff")
        assert admin.status_code == 401 and "www-authenticate" not in admin.headers
        token = await api.get("/notes", headers={"authorization": "Bearer not-a-token"})
        assert token.status_code == 401 and token.headers["www-authenticate"] == "Bearer"


async def test_signed_in_and_forbidden(example: Any) -> None:
    async with client(example["app"]) as api:
        signed_in = await sign_in(api)
        assert signed_in.status_code == 200
        assert signed_in.json()["actor"]["username"] == "alice"
        assert COOKIE in api.cookies
        assert (await api.get("/whoami")).json()["actor"]["id"] == "alice"
        assert (await api.get("/notes")).json() == {"notes": [], "owner": "alice"}
        refused = await api.get("/admin-stuff")
        assert refused.status_code == 403
        assert refused.json() == {"detail": "You may not do this (admin-stuff)."}
        assert (await api.post("/logout")).json() == {"actor": None}
        assert (await api.get("/notes")).status_code == 401


async def test_an_admin_may_do_admin_stuff(example: Any) -> None:
    async with client(example["app"]) as api:
        await sign_in(api, "root")
        answer = await api.get("/admin-stuff")
    assert answer.status_code == 200 and answer.json()["for"] == "root"


async def test_a_token_may_do_only_its_scopes(example: Any) -> None:
    doorman: Doorman = example["doorman"]
    root = await doorman.users.by_username("root")
    assert root is not None
    _, scoped = await doorman.tokens.create(root, scopes=["view"])
    _, full = await doorman.tokens.create(root)
    async with client(example["app"]) as api:
        limited = await api.get("/admin-stuff", headers={"authorization": f"Bearer {scoped}"})
        assert limited.status_code == 403, "an admin's token limited to view"
        allowed = await api.get("/admin-stuff", headers={"authorization": f"Bearer {full}"})
        assert allowed.status_code == 200


async def test_sign_in_errors_are_answered_by_the_handlers(example: Any) -> None:
    async with client(example["app"]) as api:
        wrong = await api.post("/login", json={"username": "alice", "password": "nope"})
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": "Wrong username or password."}, "JSON, as FastAPI's"
        form = await api.post("/login", data={"username": "alice", "password": PASSWORD})
        assert form.status_code == 422, "a cross-site form cannot sign anyone in"
        for _ in range(6):
            answer = await api.post("/login", json={"username": "alice", "password": "nope"})
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["detail"].startswith("Too many failed sign-in attempts")


@pytest.mark.parametrize(
    "accept",
    ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"],
)
async def test_browsers_get_a_page_for_every_refusal(example: Any, accept: str) -> None:
    async with client(example["app"], headers={"accept": accept}) as browser:
        notes = await browser.get("/notes")
        await sign_in(browser)
        admin = await browser.get("/admin-stuff")
    for answer, status, message in [
        (notes, 401, "Sign in to continue."),
        (admin, 403, "You may not do this (admin-stuff)."),
    ]:
        assert answer.status_code == status
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert f"<p>{message}</p>" in answer.text and "detail" not in answer.text
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/json,text/html;q=0.5"]
)
async def test_api_clients_get_json_for_every_refusal(example: Any, accept: str | None) -> None:
    headers = {"accept": accept} if accept is not None else {}
    async with client(example["app"], headers=headers) as api:
        notes = await api.get("/notes")
        admin = await api.get("/admin-stuff", headers={"content-type": "application/json"})
    assert (notes.status_code, notes.json()) == (401, {"detail": "Sign in to continue."})
    assert admin.status_code == 401 and admin.headers["content-type"] == "application/json"


async def test_a_store_that_is_down_is_503_never_500(own_example: Any, tmp_path: Path) -> None:
    example = own_example
    app = example["app"]
    async with client(app) as signed_in, client(app) as stranger:
        await sign_in(signed_in)
        # The database goes away: connections closed, the file and its directory gone.
        await example["doorman"].engine.dispose()
        await app.user_middleware[0].kwargs["store"].engine.dispose()
        shutil.rmtree(tmp_path / "data")
        whoami = await signed_in.get("/whoami")  # AuthMiddleware cannot load the session
        assert whoami.status_code == 503
        assert whoami.json()["detail"].startswith("Service unavailable:")  # the middleware's
        login = await sign_in(stranger)  # the route raises StoreError: the handler answers
        assert login.status_code == 503 and login.headers["retry-after"] == "5"
        assert login.json() == {"detail": "Service unavailable: try again shortly."}
        assert "accounts.db" not in login.text
        page = await signed_in.get("/whoami", headers={"accept": "text/html"})
        assert page.status_code == 503 and "<h1>Service Unavailable</h1>" in page.text


# -- the dependencies in an app of their own -------------------------------------------


def small_app(doorman: Doorman) -> Any:
    api = FastAPI(exception_handlers=exception_handlers)

    @api.get("/open")
    async def open_to_all(actor: Annotated[Actor | None, Depends(requires("read"))]) -> Any:
        return {"actor": actor}

    @api.get("/me")
    async def me(actor: SignedInActor, maybe: CurrentActor) -> Any:
        return {"same": actor is maybe}

    @api.websocket("/live")
    async def live(ws: WebSocket, actor: Annotated[Actor, Depends(requires("live"))]) -> None:
        await ws.accept()
        await ws.send_text(actor["id"])
        await ws.close()

    store = MemoryStore()
    return SessionMiddleware(AuthMiddleware(api, doorman), secret=SECRET, store=store)


@pytest.fixture
async def doorman(tmp_path: Path) -> AsyncIterator[Doorman]:
    rules = {"read": {"allow": True}, "live": {"allow": {"id": ["alice"]}}}
    found = Doorman(str(tmp_path / "small.db"), secret=SECRET, rules=rules)
    found.hasher = found.users.hasher = PasswordHasher(**FAST)
    await found.startup()
    await found.create_user("alice", PASSWORD)
    yield found
    await found.close()
    await found.engine.dispose()


async def test_requires_gives_none_when_the_rules_let_anyone_in(doorman: Doorman) -> None:
    async with client(small_app(doorman)) as api:
        assert (await api.get("/open")).json() == {"actor": None}
        assert (await api.get("/me")).status_code == 401


async def test_a_refused_websocket_is_closed_with_1008(doorman: Doorman) -> None:
    alice = await doorman.users.by_username("alice")
    assert alice is not None
    _, token = await doorman.tokens.create(alice)
    app = small_app(doorman)
    refused = await websocket(app, "/live", [])
    assert refused[0]["type"] == "websocket.close" and refused[0]["code"] == 1008
    accepted = await websocket(app, "/live", [(b"authorization", f"Bearer {token}".encode())])
    assert [m["type"] for m in accepted] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert accepted[1]["text"] == "alice"


async def test_without_auth_middleware_the_mistake_is_named() -> None:
    api = FastAPI()

    @api.get("/me")
    async def me(actor: CurrentActor) -> Any:
        return actor

    with pytest.raises(RuntimeError, match="add doorman's AuthMiddleware"):
        async with client(api) as browser:
            await browser.get("/me")


def test_the_fastapi_handlers_are_doormans_and_answer_refusals() -> None:
    assert starlette_handlers.items() <= exception_handlers.items()
    assert set(exception_handlers) - set(starlette_handlers) == {Refusal}
