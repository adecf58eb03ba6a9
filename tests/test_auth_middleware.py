"""login(), logout() and AuthMiddleware over HTTP, against real stores and databases."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires as starlette_requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from doorman import (
    AuthenticationFailed,
    AuthMiddleware,
    Doorman,
    PasswordHasher,
    SessionMiddleware,
    Throttled,
    get_session,
    guard,
    hookimpl,
    login,
    logout,
    requires,
    update_session_auth,
)
from doorman._types import Message, Receive, Scope, Send
from doorman.accounts.throttle import LoginThrottle
from doorman.integrations.starlette import exception_handlers
from doorman.stores import SessionStore, counter_for

from .conftest import SECRET, Clock, make_store
from .helpers import (
    COOKIE,
    TestClient,
    client,
    empty_accounts,
    migrated_sqlite,
    session_signer,
    sqlite_threads_settled,
)

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another long passphrase 42"


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024)


async def sign_in(request: Request) -> Response:
    form = await request.form()
    doorman: Doorman = request.scope["doorman"]
    try:
        user = await doorman.authenticate(
            str(form["username"]), str(form["password"]), client=request.client.host
        )
    except Throttled as error:
        return PlainTextResponse(str(error), 429, headers={"retry-after": str(error.retry_after)})
    except AuthenticationFailed as error:
        return PlainTextResponse(str(error), 401)
    actor = await login(request, user)
    return JSONResponse({"actor": actor})


async def sign_out(request: Request) -> Response:
    await logout(request)
    return JSONResponse({"ok": True})


async def whoami(request: Request) -> Response:
    return JSONResponse(
        {
            "actor": request.scope["actor"],
            "user": request.user.display_name if request.user.is_authenticated else None,
            "scopes": request.auth.scopes,
        }
    )


async def remember(request: Request) -> Response:
    get_session(request)["cart"] = ["book"]
    return JSONResponse({"ok": True})


async def cart(request: Request) -> Response:
    return JSONResponse({"cart": get_session(request).get("cart")})


async def change_password(request: Request) -> Response:
    doorman: Doorman = request.scope["doorman"]
    user = await doorman.users.require(request.scope["actor"]["id"])
    user = await doorman.set_password(user, NEW_PASSWORD)
    await update_session_auth(request, user)
    return JSONResponse({"ok": True})


@requires("admin-dashboard")
async def dashboard(request: Request) -> Response:
    return PlainTextResponse("secret dashboard")


@starlette_requires("authenticated")
async def members(request: Request) -> Response:
    return PlainTextResponse("members only")


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    actor = websocket.scope["actor"]
    await websocket.send_json({"actor": actor and actor["id"]})
    await websocket.close()


def build_app(doorman: Doorman, store: SessionStore, **auth_options: Any) -> Any:
    routes = [
        Route("/login", sign_in, methods=["POST"]),
        Route("/logout", sign_out, methods=["POST"]),
        Route("/whoami", whoami),
        Route("/remember", remember, methods=["POST"]),
        Route("/cart", cart),
        Route("/password", change_password, methods=["POST"]),
        Route("/dashboard", dashboard),
        Route("/members", members),
        WebSocketRoute("/ws", socket),
    ]
    starlette = Starlette(routes=routes, exception_handlers=exception_handlers)
    inner = AuthMiddleware(starlette, doorman, **auth_options)
    return SessionMiddleware(inner, secret=SECRET, store=store)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def shared_doorman(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Doorman]:
    if request.param == "postgres":
        db = request.getfixturevalue("postgres_url")
    else:
        db = migrated_sqlite(tmp_path_factory.mktemp("shared") / "accounts.db")
    found = Doorman(db, secret=SECRET, hasher=fast_hasher(), entry_points=False)
    await found.startup()
    yield found
    await found.close()


@pytest.fixture
async def doorman(
    shared_doorman: Doorman, request: pytest.FixtureRequest
) -> AsyncIterator[Doorman]:
    """A Doorman on a real SQLite file or the real PostgreSQL, with alice and root in it."""
    if shared_doorman.engine.dialect.name == "postgresql":
        request.applymarker(pytest.mark.postgres)
    await empty_accounts(shared_doorman)
    await shared_doorman.create_user("alice", PASSWORD)
    await shared_doorman.create_user("root", PASSWORD, admin=True)
    yield shared_doorman


@pytest.fixture(params=["memory", "cookie", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    found = await make_store(request.param, request, tmp_path)
    yield found
    await found.close()


@contextlib.asynccontextmanager
async def signed_in(app: Any, username: str = "alice") -> AsyncIterator[httpx.AsyncClient]:
    async with client(app) as browser:
        response = await browser.post("/login", data={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield browser


async def actor_id(browser: httpx.AsyncClient) -> str | None:
    actor = (await browser.get("/whoami")).json()["actor"]
    return actor and actor["id"]


# -- sign-in and sign-out ----------------------------------------------------


@pytest.mark.anyio
async def test_login_sets_the_actor_and_starlette_user(
    doorman: Doorman, store: SessionStore
) -> None:
    async with signed_in(build_app(doorman, store)) as browser:
        body = (await browser.get("/whoami")).json()
        assert body["actor"] == {
            "id": "alice",
            "username": "alice",
            "admin": False,
            "groups": [],
            "via": "session",
        }
        assert body["user"] == "alice"
        assert body["scopes"] == ["authenticated"]
        assert (await browser.get("/members")).text == "members only"
        user = await doorman.users.require("alice")
        assert user.last_login is not None


@pytest.mark.anyio
async def test_wrong_password_and_unknown_user_get_the_same_answer(
    doorman: Doorman, store: SessionStore
) -> None:
    async with client(build_app(doorman, store)) as browser:
        wrong = await browser.post("/login", data={"username": "alice", "password": "nope"})
        unknown = await browser.post("/login", data={"username": "nobody", "password": "nope"})
        assert (wrong.status_code, wrong.text) == (unknown.status_code, unknown.text)
        assert wrong.status_code == 401
        assert await actor_id(browser) is None


@pytest.mark.anyio
async def test_login_cycles_the_session_key_against_fixation(
    doorman: Doorman, store: SessionStore
) -> None:
    app = build_app(doorman, store)
    async with client(app) as browser:
        await browser.post("/remember")
        planted = browser.cookies[COOKIE]
        await browser.post("/login", data={"username": "alice", "password": PASSWORD})
        assert browser.cookies[COOKIE] != planted
        assert (await browser.get("/cart")).json() == {"cart": ["book"]}, "data kept"
    async with client(app, cookies={COOKIE: planted}) as attacker:
        assert await actor_id(attacker) is None
        if not store.stateless:
            assert (await attacker.get("/cart")).json() == {"cart": None}, "old id is dead"


@pytest.mark.anyio
async def test_another_users_data_does_not_carry_over_a_login(
    doorman: Doorman, store: SessionStore
) -> None:
    async with signed_in(build_app(doorman, store), "root") as browser:
        await browser.post("/remember")
        await browser.post("/login", data={"username": "alice", "password": PASSWORD})
        assert await actor_id(browser) == "alice"
        assert (await browser.get("/cart")).json() == {"cart": None}


@pytest.mark.anyio
async def test_logout_ends_the_session_server_side(doorman: Doorman, store: SessionStore) -> None:
    app = build_app(doorman, store)
    async with signed_in(app) as browser:
        stolen = browser.cookies[COOKIE]
        await browser.post("/logout")
        assert await actor_id(browser) is None
    if not store.stateless:
        async with client(app, cookies={COOKIE: stolen}) as thief:
            assert await actor_id(thief) is None


@pytest.mark.anyio
async def test_password_change_ends_every_other_session(
    doorman: Doorman, store: SessionStore
) -> None:
    app = build_app(doorman, store)
    async with signed_in(app) as laptop, signed_in(app) as phone:
        assert (await laptop.post("/password")).status_code == 200
        assert await actor_id(laptop) == "alice", "the session that changed it stays"
        assert await actor_id(phone) is None


@pytest.mark.anyio
async def test_a_disabled_users_live_session_stops_on_the_next_request(
    doorman: Doorman, store: SessionStore
) -> None:
    async with signed_in(build_app(doorman, store)) as browser:
        await doorman.users.set_active(await doorman.users.require("alice"), False)
        assert await actor_id(browser) is None
        await doorman.users.set_active(await doorman.users.require("alice"), True)
        assert await actor_id(browser) is None, "the session was ended, not paused"


@pytest.mark.anyio
async def test_ending_all_sessions_works_for_every_store(
    doorman: Doorman, store: SessionStore
) -> None:
    app = build_app(doorman, store)
    async with signed_in(app) as one, signed_in(app) as two:
        await doorman.users.end_sessions(await doorman.users.require("alice"))
        assert await actor_id(one) is None
        assert await actor_id(two) is None


@pytest.mark.anyio
async def test_a_deleted_user_is_nobody(doorman: Doorman, store: SessionStore) -> None:
    async with signed_in(build_app(doorman, store)) as browser:
        await doorman.users.delete(await doorman.users.require("alice"))
        assert await actor_id(browser) is None


@pytest.mark.anyio
async def test_a_forged_user_id_in_a_session_is_refused(doorman: Doorman) -> None:
    """Even with the signing secret (or a bug that lets data in), the auth hash must match."""
    from doorman.stores import MemoryStore

    store = MemoryStore()

    async def plant(scope: Scope, receive: Receive, send: Send) -> None:
        session = get_session(scope)
        session["_auth_user_id"] = (await doorman.users.require("root")).id
        session["_auth_hash"] = "forged"
        await PlainTextResponse("planted")(scope, receive, send)

    async with client(SessionMiddleware(plant, secret=SECRET, store=store)) as browser:
        await browser.get("/")
        cookie = browser.cookies[COOKIE]
    async with client(build_app(doorman, store), cookies={COOKIE: cookie}) as browser:
        assert await actor_id(browser) is None


def app_with_failing_pages(doorman: Doorman, store: SessionStore) -> Any:
    """Sign-in and whoami, plus two pages that answer 500: one after ``logout()``."""

    async def fail(request: Request) -> Response:
        return PlainTextResponse("something broke", 500)

    async def logout_then_fail(request: Request) -> Response:
        await logout(request)
        return PlainTextResponse("the page after sign-out broke", 500)

    routes = [
        Route("/login", sign_in, methods=["POST"]),
        Route("/whoami", whoami),
        Route("/fail", fail),
        Route("/logout-then-fail", logout_then_fail, methods=["POST"]),
    ]
    return SessionMiddleware(
        AuthMiddleware(Starlette(routes=routes), doorman), secret=SECRET, store=store
    )


@pytest.mark.anyio
async def test_logout_ends_the_session_even_when_the_response_is_an_error(
    doorman: Doorman, store: SessionStore
) -> None:
    """A 5xx response saves nothing, but a sign-out must still delete the stored session."""
    app = app_with_failing_pages(doorman, store)
    async with signed_in(app) as browser:
        stolen = browser.cookies[COOKIE]
        assert (await browser.post("/logout-then-fail")).status_code == 500
        if not store.stateless:
            assert await store.load(session_signer().unsign(stolen)) is None, "data left behind"
        assert await actor_id(browser) is None
    if not store.stateless:
        async with client(app, cookies={COOKIE: stolen}) as thief:
            assert await actor_id(thief) is None


@pytest.mark.anyio
async def test_a_disabled_users_session_ends_even_when_the_response_is_an_error(
    doorman: Doorman, store: SessionStore
) -> None:
    """The session is flushed (deleted), not merely emptied: a 5xx response saves nothing."""
    app = app_with_failing_pages(doorman, store)
    async with signed_in(app) as browser:
        stolen = browser.cookies[COOKIE]
        await doorman.users.set_active(await doorman.users.require("alice"), False)
        assert (await browser.get("/fail")).status_code == 500
        await doorman.users.set_active(await doorman.users.require("alice"), True)
        assert await actor_id(browser) is None, "the session was ended, not paused"
    if not store.stateless:
        async with client(app, cookies={COOKIE: stolen}) as thief:
            assert await actor_id(thief) is None


@pytest.mark.anyio
async def test_login_refuses_a_disabled_user(doorman: Doorman) -> None:
    """``login()`` is the last gate for apps that find the user themselves (OAuth, magic links)."""
    from doorman.stores import MemoryStore

    alice = await doorman.users.set_active(await doorman.users.require("alice"), False)

    async def sign_in_without_password(request: Request) -> Response:
        try:
            await login(request, alice)
        except AuthenticationFailed:
            return JSONResponse({"refused": True, "actor": request.scope["actor"]})
        return JSONResponse({"refused": False, "actor": request.scope["actor"]})

    routes = [Route("/magic", sign_in_without_password, methods=["POST"]), Route("/whoami", whoami)]
    app = SessionMiddleware(
        AuthMiddleware(Starlette(routes=routes), doorman), secret=SECRET, store=MemoryStore()
    )
    async with client(app) as browser:
        response = await browser.post("/magic")
        assert response.json() == {"refused": True, "actor": None}
        assert COOKIE not in browser.cookies, "no session was bound to the disabled user"
    assert (await doorman.users.require("alice")).last_login is None


# -- API tokens and HTTP Basic -----------------------------------------------


def bearer(text: str) -> dict[str, bytes]:
    return {"authorization": f"Bearer {text}".encode()}


@pytest.mark.anyio
async def test_bearer_tokens_live_revoked_expired(doorman: Doorman, clock: Clock) -> None:
    from doorman.stores import MemoryStore

    alice = await doorman.users.require("alice")
    token, text = await doorman.tokens.create(alice, name="ci")
    short_token, short = await doorman.tokens.create(alice, expires_in=2)
    async with client(build_app(doorman, MemoryStore())) as api:
        actor = (await api.get("/whoami", headers=bearer(text))).json()["actor"]
        assert actor["id"] == "alice"
        assert (actor["via"], actor["token"]) == ("token", token.id)
        assert (await api.get("/whoami", headers=bearer(short))).json()["actor"]["id"] == "alice"
        await doorman.tokens.revoke(token.id)
        assert (await api.get("/whoami", headers=bearer(text))).json()["actor"] is None
        assert short_token.expires_at is not None
        clock.advance(max(0.0, short_token.expires_at - time.time()) + 0.05)
        assert (await api.get("/whoami", headers=bearer(short))).json()["actor"] is None
        for junk in ["", "dmt_", text[:-1] + "A", "x" * 5000, "dmt_zz\u00e9"]:
            response = await api.get("/whoami", headers=bearer(junk))
            assert response.status_code == 200
            assert response.json()["actor"] is None


@pytest.mark.anyio
async def test_a_token_of_a_disabled_user_is_refused(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    alice = await doorman.users.require("alice")
    _, text = await doorman.tokens.create(alice)
    await doorman.users.set_active(alice, False)
    async with client(build_app(doorman, MemoryStore())) as api:
        assert (await api.get("/whoami", headers=bearer(text))).json()["actor"] is None


@pytest.mark.anyio
async def test_token_scopes_limit_what_it_may_do(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    root = await doorman.users.require("root")
    _, full = await doorman.tokens.create(root)
    _, narrow = await doorman.tokens.create(root, scopes=["view"])
    async with client(build_app(doorman, MemoryStore())) as api:
        assert (await api.get("/dashboard", headers=bearer(full))).text == "secret dashboard"
        assert (await api.get("/dashboard", headers=bearer(narrow))).status_code == 403


def basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"authorization": f"Basic {pair}"}


@pytest.mark.anyio
async def test_basic_auth_is_off_by_default(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    async with client(build_app(doorman, MemoryStore())) as api:
        response = await api.get("/whoami", headers=basic("alice", PASSWORD))
        assert response.json()["actor"] is None


@pytest.mark.anyio
async def test_basic_auth_when_enabled(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    app = build_app(doorman, MemoryStore(), basic_auth=True)
    async with client(app) as api:
        good = (await api.get("/whoami", headers=basic("alice", PASSWORD))).json()["actor"]
        assert (good["id"], good["via"]) == ("alice", "basic")
        again = (await api.get("/whoami", headers=basic("alice", PASSWORD))).json()["actor"]
        assert again["id"] == "alice", "served from the verified-pair cache"
        assert (await api.get("/whoami", headers=basic("alice", "wrong"))).json()["actor"] is None
        for junk in ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]:
            response = await api.get("/whoami", headers={"authorization": junk})
            assert (response.status_code, response.json()["actor"]) == (200, None)
        alice = await doorman.users.require("alice")
        await doorman.set_password(alice, NEW_PASSWORD)
        stale = (await api.get("/whoami", headers=basic("alice", PASSWORD))).json()["actor"]
        assert stale is None, "a changed password is not served from the cache"
        await doorman.users.set_active(await doorman.users.require("alice"), False)
        disabled = await api.get("/whoami", headers=basic("alice", NEW_PASSWORD))
        assert disabled.json()["actor"] is None


@pytest.mark.anyio
async def test_basic_auth_is_throttled(tmp_path: Path) -> None:
    from doorman.stores import MemoryCounter, MemoryStore

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        throttle=LoginThrottle(MemoryCounter(), per_account=2, window=60),
    )
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    async with client(build_app(doorman, MemoryStore(), basic_auth=True)) as api:
        for _ in range(2):
            await api.get("/whoami", headers=basic("alice", "wrong"))
        response = await api.get("/whoami", headers=basic("alice", PASSWORD))
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
    await doorman.close()


@pytest.mark.anyio
async def test_a_disabled_user_is_not_served_from_the_basic_cache(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    app = build_app(doorman, MemoryStore(), basic_auth=True)
    async with client(app) as api:
        first = (await api.get("/whoami", headers=basic("alice", PASSWORD))).json()["actor"]
        assert first["id"] == "alice", "the pair is now in the verified-pair cache"
        await doorman.users.set_active(await doorman.users.require("alice"), False)
        again = await api.get("/whoami", headers=basic("alice", PASSWORD))
        assert (again.status_code, again.json()["actor"]) == (200, None)


# -- throttling shared between app instances ---------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_throttling_holds_across_two_app_instances(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two workers sharing a session store share the failure counts too."""
    db = str(tmp_path / "shared.db")
    instances = []
    for _ in range(2):
        store = await make_store(kind, request, tmp_path)
        doorman = Doorman(db, secret=SECRET, hasher=fast_hasher(), entry_points=False)
        doorman.throttle = LoginThrottle(
            counter_for(store, engine=doorman.engine), per_account=3, window=60
        )
        instances.append((doorman, store, build_app(doorman, store)))
    await instances[0][0].startup()
    await instances[0][0].create_user("alice", PASSWORD)
    await instances[0][0].create_user("bob", PASSWORD)
    async with client(instances[0][2]) as one, client(instances[1][2]) as two:
        for _ in range(3):
            wrong = await one.post("/login", data={"username": "alice", "password": "x"})
            assert wrong.status_code == 401
        refused = await two.post("/login", data={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        other = await two.post("/login", data={"username": "bob", "password": PASSWORD})
        assert other.status_code == 200, "other accounts are unaffected"
    for doorman, store, _ in instances:
        await doorman.close()
        await store.close()


# -- permissions on routes ---------------------------------------------------


@pytest.mark.anyio
async def test_requires_answers_401_then_403_then_lets_admins_in(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    app = build_app(doorman, MemoryStore())
    async with client(app) as anonymous:
        assert (await anonymous.get("/dashboard")).status_code == 401
        assert (await anonymous.get("/members")).status_code == 403  # Starlette's own requires()
    async with signed_in(app, "alice") as alice:
        assert (await alice.get("/dashboard")).status_code == 403
    async with signed_in(app, "root") as root:
        assert (await root.get("/dashboard")).text == "secret dashboard"


@pytest.mark.anyio
async def test_a_refusal_is_logged_with_a_permission_denied_event(
    doorman: Doorman, caplog: pytest.LogCaptureFixture
) -> None:
    from doorman.events import PermissionDeniedEvent
    from doorman.stores import MemoryStore

    app = build_app(doorman, MemoryStore())
    with caplog.at_level(logging.INFO, logger="doorman.security"):
        async with signed_in(app, "alice") as alice:
            assert (await alice.get("/dashboard")).status_code == 403
        async with signed_in(app, "root") as root:
            assert (await root.get("/dashboard")).status_code == 200
    found = [getattr(record, "event", None) for record in caplog.records]
    events = [event for event in found if isinstance(event, PermissionDeniedEvent)]
    assert len(events) == 1, "one refusal, one event; an allowed request makes none"
    assert events[0].actor is not None and events[0].actor["id"] == "alice"
    assert events[0].action == "admin-dashboard" and events[0].resource is None


@pytest.mark.anyio
async def test_guard_protects_a_bare_asgi_app(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    async def hello(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("hello")(scope, receive, send)

    app = SessionMiddleware(
        AuthMiddleware(guard(hello, "view"), doorman), secret=SECRET, store=MemoryStore()
    )
    alice = await doorman.users.require("alice")
    _, text = await doorman.tokens.create(alice)
    async with client(app) as api:
        assert (await api.get("/", headers={"accept": "application/json"})).status_code == 401
        assert (await api.get("/", headers=bearer(text))).text == "hello"


@pytest.mark.anyio
async def test_forbidden_hook_can_answer_differently(tmp_path: Path) -> None:
    from doorman.stores import MemoryStore

    class RedirectToLogin:
        @hookimpl
        def forbidden(self, doorman: Doorman, scope: Scope, message: str) -> Any:
            if scope.get("actor") is None:
                return Response(status_code=302, headers={"location": "/-/login"})
            return None

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        plugins=[RedirectToLogin()],
    )
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    app = build_app(doorman, MemoryStore())
    async with client(app) as anonymous:
        response = await anonymous.get("/dashboard")
        assert (response.status_code, response.headers["location"]) == (302, "/-/login")
    async with signed_in(app) as alice:
        assert (await alice.get("/dashboard")).status_code == 403, "default answers the rest"
    await doorman.close()


def test_guard_refuses_a_websocket_it_does_not_allow(tmp_path: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    from doorman.stores import MemoryStore

    async def prepare() -> tuple[Doorman, str]:
        doorman = Doorman(
            str(tmp_path / "a.db"), secret=SECRET, hasher=fast_hasher(), entry_points=False
        )
        await doorman.startup()
        user = await doorman.create_user("alice", PASSWORD)
        _, text = await doorman.tokens.create(user)
        return doorman, text

    doorman, text = asyncio.run(prepare())
    app = SessionMiddleware(
        AuthMiddleware(guard(Starlette(routes=[WebSocketRoute("/ws", socket)]), "view"), doorman),
        secret=SECRET,
        store=MemoryStore(),
    )
    try:
        with TestClient(app) as test_client:
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                test_client.websocket_connect("/ws") as ws,
            ):
                ws.receive_json()
            assert refused.value.code == 1008
            with test_client.websocket_connect("/ws", headers=bearer(text)) as ws:
                assert ws.receive_json() == {"actor": "alice"}
    finally:
        asyncio.run(doorman.close())


@pytest.mark.anyio
async def test_only_a_real_true_gives_the_starlette_admin_scope(tmp_path: Path) -> None:
    """As for permissions: an actor whose ``admin`` is 1 or "yes" is no admin to requires()."""
    from doorman.stores import MemoryStore

    class Plugin:
        @hookimpl
        def actor_from_request(self, doorman: Doorman, scope: Scope) -> Any:
            admin = dict(scope["headers"]).get(b"x-admin", b"").decode()
            return {"id": "robot", "admin": True if admin == "True" else admin}

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        plugins=[Plugin()],
    )
    try:
        async with client(build_app(doorman, MemoryStore())) as api:
            for admin in ["1", "yes", "false"]:
                body = (await api.get("/whoami", headers={"x-admin": admin})).json()
                assert body["scopes"] == ["authenticated"], admin
            body = (await api.get("/whoami", headers={"x-admin": "True"})).json()
            assert body["scopes"] == ["authenticated", "admin"]
    finally:
        await doorman.close()


# -- plugins -----------------------------------------------------------------


@pytest.mark.anyio
async def test_actor_from_request_hook_and_events(tmp_path: Path) -> None:
    from doorman.stores import MemoryStore

    events: list[tuple[str, Any]] = []

    class Plugin:
        @hookimpl
        def actor_from_request(self, doorman: Doorman, scope: Scope) -> Any:
            headers = dict(scope["headers"])
            if headers.get(b"x-robot") == b"beep":

                async def robot() -> dict[str, Any]:
                    return {"id": "robot", "via": "x-robot"}

                return robot
            return None

        @hookimpl
        def on_login(self, doorman: Doorman, event: Any) -> None:
            events.append(("login", event))

        @hookimpl
        async def on_logout(self, doorman: Doorman, event: Any) -> None:
            events.append(("logout", event))

        @hookimpl
        def on_login_failed(self, doorman: Doorman, event: Any) -> None:
            events.append(("failed", event))

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        plugins=[Plugin()],
    )
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    app = build_app(doorman, MemoryStore())
    async with client(app) as browser:
        robot = (await browser.get("/whoami", headers={"x-robot": "beep"})).json()["actor"]
        assert robot == {"id": "robot", "via": "x-robot"}
        assert await actor_id(browser) is None
        await browser.post("/login", data={"username": "alice", "password": "wrong"})
        await browser.post("/login", data={"username": "alice", "password": PASSWORD})
        await browser.post("/logout")
    assert [kind for kind, _ in events] == ["failed", "login", "logout"]
    failed, signed, left = (event for _, event in events)
    assert (failed.username, failed.reason, failed.client) == (
        "alice",
        "bad-credentials",
        "127.0.0.1",
    )
    assert PASSWORD not in repr(failed) and "wrong" not in repr(failed)
    assert signed.actor["id"] == "alice"
    assert left.actor["id"] == "alice"
    await doorman.close()


# -- websockets and failure --------------------------------------------------


def test_websocket_scope_gets_the_actor(tmp_path: Path) -> None:
    from doorman.stores import MemoryStore

    async def prepare() -> tuple[Doorman, str]:
        doorman = Doorman(
            str(tmp_path / "a.db"), secret=SECRET, hasher=fast_hasher(), entry_points=False
        )
        await doorman.startup()
        user = await doorman.create_user("alice", PASSWORD)
        _, text = await doorman.tokens.create(user)
        return doorman, text

    doorman, text = asyncio.run(prepare())
    with TestClient(build_app(doorman, MemoryStore())) as test_client:
        with test_client.websocket_connect("/ws", headers=bearer(text)) as ws:
            assert ws.receive_json() == {"actor": "alice"}
        with test_client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"actor": None}
    asyncio.run(doorman.close())


@pytest.mark.anyio
async def test_accounts_database_down_gives_503_never_a_guess(tmp_path: Path) -> None:
    doorman = Doorman(
        str(tmp_path / "missing" / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
    )
    with sqlite_threads_settled():
        await down_database_answers_503(doorman)


async def down_database_answers_503(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    async with client(build_app(doorman, MemoryStore())) as api:
        anonymous = await api.get("/whoami")
        assert anonymous.status_code == 200, "no credentials: no lookup, no failure"
        response = await api.get("/whoami", headers=bearer("dmt_" + "a" * 16 + "_" + "b" * 43))
        assert response.status_code == 503
        login_attempt = await api.post("/login", data={"username": "a", "password": "b"})
        assert login_attempt.status_code == 503
    await doorman.close()


def test_lifespan_startup_migrates_and_runs_startup_hooks(tmp_path: Path) -> None:
    from doorman.stores import MemoryStore

    started: list[Doorman] = []

    class Plugin:
        @hookimpl
        def startup(self, doorman: Doorman) -> Any:
            async def record() -> None:
                started.append(doorman)

            return record()

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        plugins=[Plugin()],
    )
    with TestClient(build_app(doorman, MemoryStore())) as test_client:
        assert started == [doorman]
        assert test_client.get("/whoami").json()["actor"] is None
    assert (tmp_path / "a.db").exists()
    asyncio.run(doorman.close())


@pytest.mark.anyio
async def test_a_failed_startup_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    """Not an error escaping before Starlette's handler, which uvicorn would ignore."""
    from doorman.stores import MemoryStore

    class Plugin:
        @hookimpl
        def startup(self, doorman: Doorman) -> Any:
            raise RuntimeError("the licence server is down")

    doorman = Doorman(
        str(tmp_path / "a.db"),
        secret=SECRET,
        hasher=fast_hasher(),
        entry_points=False,
        plugins=[Plugin()],
    )
    sent: list[Message] = []
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await build_app(doorman, MemoryStore())({"type": "lifespan"}, receive, send)
    finally:
        await doorman.close()
    assert sent == [
        {"type": "lifespan.startup.failed", "message": "RuntimeError: the licence server is down"}
    ]


@pytest.mark.anyio
async def test_requires_on_an_http_endpoint_method(tmp_path: Path) -> None:
    from starlette.endpoints import HTTPEndpoint

    from doorman.stores import MemoryStore

    class Reports(HTTPEndpoint):
        @requires("view")
        async def get(self, request: Request) -> Response:
            return PlainTextResponse(f"reports for {request.user.display_name}")

    doorman = Doorman(
        str(tmp_path / "a.db"), secret=SECRET, hasher=fast_hasher(), entry_points=False
    )
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    routes = [Route("/login", sign_in, methods=["POST"]), Route("/reports", Reports)]
    app = SessionMiddleware(
        AuthMiddleware(Starlette(routes=routes), doorman), secret=SECRET, store=MemoryStore()
    )
    async with client(app) as browser:
        assert (await browser.get("/reports")).status_code == 401
        await browser.post("/login", data={"username": "alice", "password": PASSWORD})
        assert (await browser.get("/reports")).text == "reports for alice"
    await doorman.close()


# -- sign-ins: one session at a time -----------------------------------------


@pytest.mark.anyio
async def test_one_session_can_be_signed_out_from_elsewhere(
    doorman: Doorman, store: SessionStore
) -> None:
    """Works in every store, the stateless signed-cookie one included."""
    app = build_app(doorman, store)
    alice = await doorman.users.require("alice")
    async with signed_in(app) as laptop:
        async with signed_in(app) as phone:
            signins = await doorman.signins.list(alice)
            assert len(signins) == 2
            assert {s.address for s in signins} == {"127.0.0.1"}
            assert all(s.username == "alice" and s.user_agent for s in signins)
            newest = signins[0] if signins[0].created_at >= signins[1].created_at else signins[1]
            assert await doorman.signins.revoke(newest.id)
            assert await actor_id(phone) is None
            assert await actor_id(laptop) == "alice"
        await laptop.post("/logout")
    assert await doorman.signins.list(alice) == [], "logout removes the sign-in"


@pytest.mark.anyio
async def test_password_change_leaves_only_the_current_sign_in(doorman: Doorman) -> None:
    from doorman.stores import MemoryStore

    app = build_app(doorman, MemoryStore())
    async with signed_in(app) as laptop, signed_in(app) as phone:
        await laptop.post("/password")
        alice = await doorman.users.require("alice")
        assert len(await doorman.signins.list(alice)) == 1
        assert await actor_id(laptop) == "alice"
        assert await actor_id(phone) is None


@pytest.mark.anyio
async def test_end_sessions_clears_the_sign_in_list(doorman: Doorman) -> None:
    from doorman.stores import CookieStore

    app = build_app(doorman, CookieStore())
    async with signed_in(app) as browser:
        alice = await doorman.users.require("alice")
        await doorman.end_sessions(alice)
        assert await doorman.signins.list(alice) == []
        assert await actor_id(browser) is None


@pytest.mark.anyio
async def test_last_seen_is_written_at_most_once_a_minute(
    doorman: Doorman, monkeypatch: pytest.MonkeyPatch
) -> None:
    import doorman.accounts.signins as signins_module
    from doorman.stores import MemoryStore

    async with signed_in(build_app(doorman, MemoryStore())) as browser:
        alice = await doorman.users.require("alice")
        (first,) = await doorman.signins.list(alice)
        await actor_id(browser)
        assert (await doorman.signins.list(alice))[0].last_seen == first.last_seen
        later = first.last_seen + signins_module.LAST_SEEN_RESOLUTION + 1
        monkeypatch.setattr(signins_module.time, "time", lambda: later)
        await actor_id(browser)
        assert (await doorman.signins.list(alice))[0].last_seen == later
        assert await doorman.signins.clear_stale(older_than=3600) == 0
        monkeypatch.setattr(signins_module.time, "time", lambda: later + 7200)
        assert await doorman.signins.clear_stale(older_than=3600) == 1
        assert await actor_id(browser) is None, "a swept sign-in is signed out"


@pytest.mark.anyio
async def test_signing_in_again_ends_the_previous_sign_in(
    doorman: Doorman, store: SessionStore
) -> None:
    """A copy of the earlier cookie dies too, even a signed cookie the server cannot delete."""
    app = build_app(doorman, store)
    async with signed_in(app, "alice") as browser:
        copied = browser.cookies[COOKIE]
        again = await browser.post("/login", data={"username": "root", "password": PASSWORD})
        assert again.status_code == 200
        assert await actor_id(browser) == "root"
    async with client(app, cookies={COOKIE: copied}) as thief:
        assert await actor_id(thief) is None
    assert await doorman.signins.list(await doorman.users.require("alice")) == []


@pytest.mark.anyio
async def test_a_sign_in_id_counts_only_for_its_own_user(doorman: Doorman) -> None:
    """Even with a bug that lets data into a session, another user's live sign-in does not do."""
    from doorman.auth.middleware import SESSION_AUTH_HASH, SESSION_SIGNIN, SESSION_USER_ID
    from doorman.stores import MemoryStore

    store = MemoryStore()
    alice = await doorman.users.require("alice")
    root = await doorman.users.require("root")

    async def planted_session(signin: str) -> str:
        async def plant(scope: Scope, receive: Receive, send: Send) -> None:
            session = get_session(scope)
            session[SESSION_USER_ID] = alice.id
            session[SESSION_AUTH_HASH] = doorman.session_auth_hash(alice)
            session[SESSION_SIGNIN] = signin
            await PlainTextResponse("planted")(scope, receive, send)

        async with client(SessionMiddleware(plant, secret=SECRET, store=store)) as browser:
            await browser.get("/")
            return browser.cookies[COOKIE]

    app = build_app(doorman, store)
    own = await planted_session(await doorman.signins.record(alice, address=None))
    async with client(app, cookies={COOKIE: own}) as browser:
        assert await actor_id(browser) == "alice", "the planted session is otherwise valid"
    borrowed = await planted_session(await doorman.signins.record(root, address=None))
    async with client(app, cookies={COOKIE: borrowed}) as browser:
        assert await actor_id(browser) is None


@pytest.mark.anyio
async def test_signing_out_everywhere_also_ends_a_sign_in_in_flight(doorman: Doorman) -> None:
    """The password was checked before "sign out everywhere"; the session was made after it."""
    from doorman.stores import CookieStore

    async def sign_in_while_signed_out_everywhere(request: Request) -> Response:
        form = await request.form()
        user = await doorman.authenticate(str(form["username"]), str(form["password"]), client=None)
        await doorman.end_sessions(await doorman.users.require(user.username))  # meanwhile
        await login(request, user)
        return JSONResponse({"ok": True})

    routes = [
        Route("/login", sign_in_while_signed_out_everywhere, methods=["POST"]),
        Route("/whoami", whoami),
    ]
    app = SessionMiddleware(
        AuthMiddleware(Starlette(routes=routes), doorman), secret=SECRET, store=CookieStore()
    )
    async with client(app) as browser:
        response = await browser.post("/login", data={"username": "alice", "password": PASSWORD})
        assert response.status_code == 200
        assert await actor_id(browser) is None
