"""Helpers for tests, doorman's own and its users'.

- ``signed_in_client(app, user)``: an httpx client over the app, signed in.
- ``session_cookie_for(app, user)``: the cookie it uses, for any other client.
- ``StoreContract``: the conformance suite every session store passes.
- ``doorman.testing.pytest_plugin``: fixtures for a throwaway database and a
  ``Doorman`` on it (see docs/testing.md).
"""

from __future__ import annotations

from .client import session_cookie_for, signed_in_client
from .contract import StoreContract, session_probe_app

__all__ = ["StoreContract", "session_cookie_for", "session_probe_app", "signed_in_client"]
