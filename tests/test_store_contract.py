"""Every store passes the one conformance suite, against the real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from doorman.stores import SessionStore
from doorman.testing import StoreContract

from .conftest import STORE_KINDS, make_store
from .helpers import sqlite_threads_settled


class TestStores(StoreContract):
    @pytest.fixture(params=STORE_KINDS)
    async def store(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[SessionStore]:
        store = await make_store(request.param, request, tmp_path, empty_file=True)
        yield store
        await store.close()

    @pytest.fixture(params=["sqlite", "postgres", "redis"])
    async def down_store(self, request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
        # Real drivers against places where nothing answers: a SQLite file in a
        # directory that does not exist, and loopback ports with no server.
        from doorman.stores.redis import RedisStore
        from doorman.stores.sql import SQLStore

        store: SessionStore
        if request.param == "sqlite":
            store = SQLStore("/nonexistent-doorman-dir/sessions.db")
        elif request.param == "postgres":
            store = SQLStore("postgresql://postgres@127.0.0.1:1/test")
        else:
            store = RedisStore("redis://127.0.0.1:1/0", timeout=1)
        with sqlite_threads_settled():
            yield store
            await store.close()
