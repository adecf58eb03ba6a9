"""What a dump holds: its lists, the columns of each list's records, and ``check``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..db.schema import passkeys_table, recovery_codes_table, tokens_table, totp_table, users_table
from ..exceptions import DumpError

__all__ = [
    "CHUNK",
    "FACTORS",
    "FACTOR_COLUMNS",
    "KINDS",
    "TOKEN_COLUMNS",
    "USER_COLUMNS",
    "check",
]

#: The lists of a dump.
KINDS = ("users", "groups", "tokens", "totp", "recovery_codes", "passkeys")
#: The second factors' lists: each row names its user; absent from dumps made before 0006.
FACTORS: tuple[tuple[str, sa.Table, tuple[str, ...]], ...] = (
    ("totp", totp_table, ("user_id",)),
    ("recovery_codes", recovery_codes_table, ("id", "user_id")),
    ("passkeys", passkeys_table, ("id", "user_id")),
)
#: Rows per statement (and per progress step).
CHUNK = 500


def _columns(table: sa.Table, *left_out: str) -> list[sa.Column[Any]]:
    return [column for column in table.columns if column.name not in left_out]


USER_COLUMNS = _columns(users_table, "id", "username_key", "username_skeleton")
TOKEN_COLUMNS = _columns(tokens_table, "user_id")
FACTOR_COLUMNS = {kind: _columns(table, *left_out) for kind, table, left_out in FACTORS}
#: Of each list of records: the columns in a dump, and the field it adds.
_RECORDS = (
    ("users", USER_COLUMNS, "groups"),
    ("tokens", TOKEN_COLUMNS, "username"),
    *((kind, FACTOR_COLUMNS[kind], "username") for kind, _, _ in FACTORS),
)

#: Columns added since dumps were first made (revision 0005), with the value an older
#: dump's records get.
_ADDED_LATER: dict[str, dict[str, Any]] = {
    "users": {"email_verified": False, "pending_email": None},
}


def check(data: Any, source: str = "dump") -> dict[str, Any]:
    """``data`` if it is a dump as ``dump`` writes it, else a ``DumpError`` naming the first flaw.

    Messages start with ``source``, such as the name of the file the dump was read from.
    """
    if isinstance(data, dict):
        for kind, _, _ in FACTORS:
            data.setdefault(kind, [])  # a dump made before second factors
    if not isinstance(data, dict) or set(data) != {"doorman", "revision", *KINDS}:
        raise DumpError(f"{source}: not a doorman dump; make one with doorman db dump")
    if not all(isinstance(data[kind], list) for kind in KINDS):
        raise DumpError(f"{source}: {', '.join(KINDS)} must be lists")
    if not all(isinstance(name, str) for name in data["groups"]):
        raise DumpError(f"{source}: groups must be a list of names")
    for kind, columns, added in _RECORDS:
        for position, record in enumerate(data[kind]):
            later = _ADDED_LATER.get(kind, {})
            if isinstance(record, dict) and record and not set(record) & set(later):
                record = data[kind][position] = {**later, **record}  # an older dump
            _check_record(record, f"{source}: {kind}[{position}]", columns, added)
    for position, user in enumerate(data["users"]):
        if not all(isinstance(name, str) for name in user["groups"]):
            raise DumpError(f"{source}: users[{position}].groups: a list of names")
    return data


def _check_record(record: object, where: str, columns: list[sa.Column[Any]], added: str) -> None:
    expected = {column.name for column in columns} | {added}
    if not isinstance(record, dict) or set(record) != expected:
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DumpError(f"{where}: has {found}; expected {sorted(expected)}")
    for column in columns:
        if not _fits(column, record[column.name]):
            raise DumpError(
                f"{where}.{column.name}: {record[column.name]!r:.60} is not a "
                f"{column.type.python_type.__name__}"
                + ("" if column.nullable else " (it cannot be null)")
            )


def _fits(column: Any, value: object) -> bool:
    if value is None:
        return bool(column.nullable)
    kind = column.type.python_type
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)
