"""Accounts as JSON: ``dump`` them from a database, ``load`` them into another.

``doorman db dump`` and ``doorman db load`` are these two functions. A dump is
one JSON object::

    {
      "doorman": "0.1.0",     # the doorman that wrote it
      "revision": "0002",     # the schema revision of the database it came from
      "users": [
        {"username": "alice", "email": "alice@example.com",
         "password_hash": "$argon2id$...", "is_admin": true, "is_active": true,
         "session_version": 0, "created_at": 1700000000.0, "last_login": null,
         "groups": ["ops"]}
      ],
      "groups": ["ops"],
      "tokens": [
        {"id": "...", "secret_hash": "...", "name": "deploy", "scopes": null,
         "created_at": 1700000000.0, "expires_at": null, "last_used_at": null,
         "revoked_at": null, "username": "alice"}
      ],
      "totp": [{"secret": "...", "created_at": ..., "confirmed_at": ..., "last_step": ...,
                "username": "alice"}],
      "recovery_codes": [{"code_hash": "...", "created_at": ..., "used_at": null,
                          "username": "alice"}],
      "passkeys": [{"credential_id": "...", "user_handle": "...", "public_key": "...",
                    "sign_count": 0, "name": "laptop", ..., "username": "alice"}]
    }

Users and tokens carry every column of their table but the internal ids (a
dump made before revision 0005 has no ``email_verified`` or ``pending_email``:
they load as false and null), so a
dump loads into a database that has users already: users name their groups,
tokens their user. Values are as the tables hold them: times in Unix seconds,
a token's ``scopes`` as the JSON text of a list (or null). Users are sorted by
username (without case), groups by name and tokens by id, so the same accounts
make the same dump from SQLite or PostgreSQL. Password and token hashes are in
it, never a token itself; sessions, sign-ins, throttle counts and the generated
secret are not. Second factors are (revision 0006): TOTP secrets (in clear, as
the table holds them: a dump is as secret as the database), recovery-code hashes
(salted with the username, so they work in the new database) and passkeys. A
dump made before has no such lists: they load as empty.

``load`` checks the whole dump first, then inserts it in one transaction: all
of it or nothing. Whatever stops it is a ``DumpError`` that says what and where.
The package: ``records`` (the lists and their columns, ``check``), ``dumping``
and ``loading``.
"""

from __future__ import annotations

from ..exceptions import DumpError
from .dumping import Progress, dump
from .loading import Loaded, load
from .records import KINDS, check

__all__ = ["KINDS", "DumpError", "Loaded", "Progress", "check", "dump", "load"]
