"""The store conformance suite, and the probe app it drives the middleware with.

Third-party stores can reuse the suite that every doorman store passes::

    import pytest
    from doorman.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            store = MyStore(...)
            yield store
            await store.close()

Tests are async and run with anyio's pytest plugin (installed with httpx).
Override ``down_store`` to return a store pointed at a service that is not
running, so the suite checks that it fails with ``StoreError``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from .._types import Receive, Scope, Send
from ..exceptions import SessionInterrupted, StoreError
from ..sessions import SessionMiddleware, get_session
from ..signing import Signer
from ..stores.base import SessionStore

__all__ = ["StoreContract", "session_probe_app"]

_SECRET = "doorman-testing-secret-" + "x" * 32


async def session_probe_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app that drives a session from the URL, and answers it as JSON.

    ``/set?k=v`` sets keys, ``/get`` reads, ``/cycle`` calls ``cycle_key()``,
    ``/flush`` calls ``flush()``, ``/fail`` answers 500 after setting keys.
    """
    session = get_session(scope)
    action = scope["path"].strip("/")
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    if action in ("set", "fail"):
        session.update(query)
    elif action == "cycle":
        session.cycle_key()
    elif action == "flush":
        session.flush()
    body = json.dumps(dict(session)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500 if action == "fail" else 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class StoreContract:
    """The behaviour every ``SessionStore`` must have; subclass and give ``store``."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[SessionStore]:  # pragma: no cover - overridden
        raise NotImplementedError("give the suite a `store` fixture")
        yield

    @pytest.fixture
    async def down_store(self) -> SessionStore | None:
        """A store whose service is down, or None for stores with no service."""
        return None

    # -- the store alone ---------------------------------------------------

    @pytest.mark.anyio
    async def test_round_trip(self, store: SessionStore) -> None:
        key = await store.save(None, '{"a": 1}', time.time() + 60)
        assert await store.load(key) == '{"a": 1}'

    @pytest.mark.anyio
    async def test_payload_is_kept_exactly(self, store: SessionStore) -> None:
        payload = json.dumps({"text": 'naïve ☃ "quoted" ;, =', "n": [1, 2.5, None]})
        key = await store.save(None, payload, time.time() + 60)
        assert await store.load(key) == payload

    @pytest.mark.anyio
    async def test_update_keeps_the_key_on_server_stores(self, store: SessionStore) -> None:
        key = await store.save(None, "1", time.time() + 60)
        new_key = await store.save(key, "2", time.time() + 60)
        assert await store.load(new_key) == "2"
        if not store.stateless:
            assert new_key == key

    @pytest.mark.anyio
    async def test_keys_are_new_and_long(self, store: SessionStore) -> None:
        keys = {await store.save(None, "{}", time.time() + 60) for _ in range(20)}
        assert len(keys) == 20 or store.stateless
        if not store.stateless:
            assert all(len(key) >= 22 for key in keys)  # >= 128 bits in base64

    @pytest.mark.anyio
    async def test_unknown_key_loads_nothing(self, store: SessionStore) -> None:
        assert await store.load("A" * 43) is None
        assert await store.load("not-a-key") is None

    @pytest.mark.anyio
    async def test_expired_session_is_gone(self, store: SessionStore) -> None:
        saved = time.time()
        key = await store.save(None, "soon", saved + 0.05)
        kept = await store.save(None, "later", saved + 60)
        # Gone 1.1 s after it was saved at the latest (a store may count whole seconds):
        # asked every 20 ms until then, so a store that ends it on time passes at once.
        while await store.load(key) is not None:
            assert time.time() < saved + 1.1, "an expired session is still loaded"
            await asyncio.sleep(0.02)
        assert await store.load(kept) == "later"
        assert await store.clear_expired() >= 0
        assert await store.load(kept) == "later"

    @pytest.mark.anyio
    async def test_delete(self, store: SessionStore) -> None:
        key = await store.save(None, "x", time.time() + 60)
        await store.delete(key)
        await store.delete(key)  # twice is fine
        if not store.stateless:
            assert await store.load(key) is None

    @pytest.mark.anyio
    async def test_saving_a_deleted_session_is_refused(self, store: SessionStore) -> None:
        if store.stateless:
            pytest.skip("a stateless store has nothing to delete")
        key = await store.save(None, "x", time.time() + 60)
        await store.delete(key)
        with pytest.raises(SessionInterrupted):
            await store.save(key, "resurrected", time.time() + 60)
        assert await store.load(key) is None

    @pytest.mark.anyio
    async def test_concurrent_writers_lose_nothing(self, store: SessionStore) -> None:
        expires = time.time() + 60
        keys = await asyncio.gather(*(store.save(None, "0", expires) for _ in range(30)))

        async def bump(key: str, times: int) -> str:
            for n in range(1, times + 1):
                key = await store.save(key, str(n), expires)
            return key

        final = await asyncio.gather(*(bump(key, 5) for key in keys))
        assert [await store.load(key) for key in final] == ["5"] * 30

    @pytest.mark.anyio
    async def test_ping(self, store: SessionStore) -> None:
        await store.ping()

    @pytest.mark.anyio
    async def test_a_store_that_is_down_raises_store_error(
        self, down_store: SessionStore | None
    ) -> None:
        if down_store is None:
            pytest.skip("this store has no service to lose")
        with pytest.raises(StoreError):
            await down_store.load("A" * 43)
        with pytest.raises(StoreError):
            await down_store.save(None, "{}", time.time() + 60)
        with pytest.raises(StoreError):
            await down_store.ping()

    # -- the store under the middleware ------------------------------------

    def client(self, store: SessionStore, **options: Any) -> Any:
        import httpx

        app = SessionMiddleware(session_probe_app, secret=_SECRET, store=store, **options)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")

    @pytest.mark.anyio
    async def test_middleware_round_trip(self, store: SessionStore) -> None:
        async with self.client(store) as client:
            assert (await client.get("/set?user=alice")).json() == {"user": "alice"}
            assert (await client.get("/get")).json() == {"user": "alice"}

    @pytest.mark.anyio
    async def test_cycle_key_keeps_data_under_a_new_key(self, store: SessionStore) -> None:
        async with self.client(store) as client:
            await client.get("/set?user=alice")
            old_cookie = client.cookies["doorman_session"]
            assert (await client.get("/cycle")).json() == {"user": "alice"}
            new_cookie = client.cookies["doorman_session"]
            assert new_cookie != old_cookie
            assert (await client.get("/get")).json() == {"user": "alice"}
            if not store.stateless:
                client.cookies.clear()
                client.cookies["doorman_session"] = old_cookie
                assert (await client.get("/get")).json() == {}

    @pytest.mark.anyio
    async def test_flush_ends_the_session(self, store: SessionStore) -> None:
        async with self.client(store) as client:
            await client.get("/set?user=alice")
            old_cookie = client.cookies["doorman_session"]
            response = await client.get("/flush")
            assert response.json() == {}
            assert "Max-Age=0" in response.headers["set-cookie"]
            assert "doorman_session" not in client.cookies
            if not store.stateless:
                client.cookies["doorman_session"] = old_cookie
                assert (await client.get("/get")).json() == {}

    @pytest.mark.anyio
    async def test_server_error_saves_nothing(self, store: SessionStore) -> None:
        async with self.client(store) as client:
            await client.get("/set?user=alice")
            response = await client.get("/fail?user=mallory")
            assert response.status_code == 500
            assert "set-cookie" not in response.headers
            assert (await client.get("/get")).json() == {"user": "alice"}

    @pytest.mark.anyio
    async def test_middleware_answers_503_when_the_store_is_down(
        self, down_store: SessionStore | None
    ) -> None:
        if down_store is None:
            pytest.skip("this store has no service to lose")
        async with self.client(down_store) as client:
            response = await client.get("/set?user=alice")  # fails on save
            assert response.status_code == 503
            assert "set-cookie" not in response.headers
            signed = Signer(_SECRET, salt="doorman.session").sign("A" * 43)
            client.cookies["doorman_session"] = signed
            response = await client.get("/get")  # fails on load, before the app runs
            assert response.status_code == 503
