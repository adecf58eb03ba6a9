"""Optional dependencies: a missing one is named together with the extra that installs it.

``pip install doorman`` brings the session middleware, the accounts and the
SQLite store. The sign-in server, PostgreSQL, Redis, the gate and Sentry each
need an extra (``doorman[server]``, ...). Their imports run inside
``needs_extra``, so that a missing package raises ``MissingDependency``, one
line that says what to install, instead of a bare ``No module named 'asyncpg'``
from deep inside a stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .exceptions import MissingDependency

__all__ = ["needs_extra"]


@contextlib.contextmanager
def needs_extra(extra: str, purpose: str) -> Iterator[None]:
    """The imports in this block come with ``doorman[extra]``, and ``purpose`` needs them."""
    try:
        yield
    except MissingDependency:
        raise
    except ModuleNotFoundError as error:
        # A module of doorman's own that is missing is a broken install, not an extra.
        if not error.name or error.name.partition(".")[0] == "doorman":
            raise
        raise MissingDependency(error.name, extra=extra, purpose=purpose) from None
