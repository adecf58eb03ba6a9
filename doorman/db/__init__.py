"""doorman's persistence: engines, transactions, change epochs, tables and migrations.

``engine`` turns a path or URL into an engine; ``transaction`` reads and writes
(a write moves the change epoch once committed); ``epochs`` tells every worker
that something changed; ``schema`` holds the tables and ``migrations`` makes
them, once, at start-up (``doorman db migrate``, ``Doorman.startup``).
"""

from __future__ import annotations

from .engine import VERSION_TABLE, async_url, create_engine, describe, in_memory, unavailable
from .schema import metadata, sessions_table
from .transaction import connect

__all__ = [
    "VERSION_TABLE",
    "async_url",
    "connect",
    "create_engine",
    "describe",
    "in_memory",
    "metadata",
    "sessions_table",
    "unavailable",
]
