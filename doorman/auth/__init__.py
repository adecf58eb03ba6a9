"""Authentication for ASGI apps: ``AuthMiddleware``, ``login()``/``logout()``, guards,
actors, CSRF and the websocket origin check.

The accounts they work on (users, tokens, sign-ins, passwords, permissions,
throttling) are the data layer, ``doorman.accounts``; ``doorman.auth.throttle``
and ``doorman.auth.permissions`` still name what moved there.
"""

from __future__ import annotations
