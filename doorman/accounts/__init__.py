"""The accounts data layer: users and groups, API tokens, sign-ins, passwords,
permission rules, trusted devices and the sign-in throttle.

Below ``doorman.core`` (which wires them into one ``Doorman``) and above
``doorman.db`` (engine, transactions, epochs, tables) and ``doorman.stores``
(where the throttle's counts live). Nothing here speaks ASGI.
"""

from __future__ import annotations
