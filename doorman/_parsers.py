"""How each setting's value is read and checked: the parsers behind ``doorman.config.SETTINGS``.

Each parser takes what came from the file, the environment or a flag and
returns the clean value, or raises ``_Bad`` with a message that says what is
wrong and how to fix it (never echoing the value: it may be a secret).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .database import async_url, in_memory
from .exceptions import ConfigError
from .signing import MAKE_A_SECRET, MIN_SECRET_LENGTH

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+)\s*(|b|k|kb|kib|m|mb|mib)")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024}
_SIZE_UNITS.update(m=1024**2, mb=1024**2, mib=1024**2)
_ROUTE_PREFIX = re.compile(r"/(?:[A-Za-z0-9._~-]+/)+")  # not / alone: the pages need their own
_DOMAIN = re.compile(r"\.?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}")
_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f\\?#]")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f\\]")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Bad(Exception):
    """A value is wrong; the message says how and how to fix it (no value in it)."""


def parse_duration(text: str | int) -> int:
    """Seconds in ``3600``, ``"3600s"``, ``"30m"``, ``"12h"``, ``"90d"`` or ``"2w"``.

    Raises ``ValueError`` for anything else, or a duration of 0.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    elif isinstance(text, str) and (found := _DURATION.fullmatch(text.strip().lower())):
        seconds = int(found[1]) * _UNITS[found[2]]
    else:
        raise ValueError(f"{text!r} is not a duration such as 3600, 30m, 12h or 90d")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be above 0 seconds")
    return seconds


# -- parsers: a value from TOML, JSON or the environment (text) in, a checked value out --


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("give some text")
    return value.strip()


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None (or empty text, as from ``DOORMAN_X=``) means "not set"."""

    def parse_optional(value: object) -> Any:
        return None if value is None or value == "" else parse(value)

    return parse_optional


def _integer(low: int, high: int, example: int) -> Callable[[Any], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if type(value) is not int or not low <= value <= high:
            raise _Bad(f"give a whole number from {low} to {high}, such as {example}")
        return value

    return parse


def _seconds(low: int, example: str) -> Callable[[Any], int]:
    def parse(value: object) -> int:
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]
        except ValueError:
            seconds = -1
        if seconds < low:
            unit = "second" if low == 1 else "seconds"
            raise _Bad(f"give at least {low} {unit}, as a number or a duration such as {example}")
        return seconds

    return parse


def _bytes(low: int, high: int, example: str) -> Callable[[Any], int]:
    """A size: bytes, or a number with a unit, ``64KB`` or ``1MB`` (multiples of 1024)."""

    def parse(value: object) -> int:
        size = -1
        if type(value) is int:
            size = value
        elif isinstance(value, str) and (found := _SIZE.fullmatch(value.strip().lower())):
            size = int(found[1]) * _SIZE_UNITS[found[2]]
        if not low <= size <= high:
            raise _Bad(
                f"give a size from {low} bytes to {high // 1024**2} MB, as bytes or with a unit "
                f"such as {example}"
            )
        return size

    return parse


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Bad("give true or false (from the environment also 1/0, yes/no)")


def _choice_of_store(value: object) -> str:
    spec = _text(value)
    if spec in ("db", "cookie", "memory"):
        return spec
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return _redis_url(spec)
    raise _Bad("give db (the database), cookie, memory or a redis:// URL")


def _redis_url(url: str) -> str:
    """What redis-py would refuse (or misread) only once the server starts."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        raise _Bad("the port is not a number from 1 to 65535; give one such as 6379") from None
    if parts.scheme == "unix" and not parts.path:
        raise _Bad("give the socket's path, such as unix:///run/redis/redis.sock")
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise _Bad("the path is the database number; give one such as redis://host:6379/0")
    return url


def _database(value: object) -> str:
    db = _text(value)
    try:
        url = async_url(db)
    except ConfigError as error:
        raise _Bad(str(error).removeprefix("db: ")) from None
    if url.get_backend_name() == "sqlite" and in_memory(url):
        raise _Bad(  # each command, and each worker, would have an empty one of its own
            "a SQLite database in memory lasts one process; give a file such as doorman.db"
        )
    return db


def _secrets(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = re.split(r"[,\n]", value)
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
        raise _Bad("give a list of secrets, newest first (comma-separated in the environment)")
    found = tuple(s.strip() for s in value if s.strip())
    for position, secret in enumerate(found, 1):
        if len(secret) < MIN_SECRET_LENGTH:
            raise _Bad(
                f"secret #{position} is {len(secret)} characters long; give at least "
                f"{MIN_SECRET_LENGTH}, such as the output of: {MAKE_A_SECRET}"
            )
    return found or None


def _route_prefix(value: object) -> str:
    prefix = _text(value)
    if not _ROUTE_PREFIX.fullmatch(prefix):
        raise _Bad("give a path that starts and ends with /, such as /-/ or /auth/ (not / alone)")
    return prefix


def _public_url(value: object) -> str:
    url = _text(value)
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise _Bad("give the sign-in server's external base URL, such as https://auth.example.com")
    return url.rstrip("/")


def _login_redirect(value: object) -> str:
    """A path on this site, or an absolute http(s) URL (its host is checked at start-up)."""
    target = _text(value)
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:  # a broken [IPv6] host
        parts = None
    if parts is not None and not parts.fragment and not _UNSAFE_URL.search(target):
        if target.startswith("/") and not target.startswith("//") and not parts.netloc:
            return target
        if parts.scheme in ("http", "https") and parts.hostname and not parts.username:
            return target
    raise _Bad(
        "give a path on this site, such as /, or an absolute URL on an allowed origin "
        "(public_url's, or one of allowed_origins), such as https://app.example.com/"
    )


def _cookie_domain(value: object) -> str:
    domain = _text(value).lower()
    if not _DOMAIN.fullmatch(domain):
        raise _Bad("give a domain name only (no scheme, port or path), such as example.com")
    return domain


def _directory(value: object) -> str:
    path = _text(value)
    if not Path(path).is_dir():
        raise _Bad("give an existing directory (relative paths start at the working directory)")
    return path


def _table(check: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Any], Any]:
    def parse(value: object) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _Bad("give a TOML table (in the environment: a JSON object)") from None
        if not isinstance(value, Mapping):
            raise _Bad("give a TOML table (in the environment: a JSON object)")
        table = copy.deepcopy(dict(value))
        if check is not None:
            check(table)
        return table

    return parse


def _check_rules(table: dict[str, Any]) -> None:
    from .auth.permissions import Rules

    try:
        Rules(table)
    except ConfigError as error:
        raise _Bad(f"{error} (see docs/permissions.md)") from None


def _sentry(value: object) -> dict[str, Any]:
    table: dict[str, Any]
    if isinstance(value, str) and value.strip().startswith(("http://", "https://")):
        table = {"dsn": value.strip()}  # DOORMAN_SENTRY=https://key@sentry.example.com/1
    else:
        table = _table()(value)
    if table and not isinstance(table.get("dsn"), str):
        raise _Bad('give a table with at least "dsn", such as {dsn = "https://...@.../1"}')
    if table:
        from .integrations.sentry import check_sentry_options

        try:
            check_sentry_options(table)
        except ConfigError as error:
            raise _Bad(str(error).removeprefix("sentry: ")) from None
    return table


def _smtp_url(value: object) -> str:
    """A URL; or a table ``{url = "smtp://user@host:587", password = {"$file" = ...}}``."""
    from .mail.smtp_url import EXAMPLE, parse_smtp_url, with_password

    if isinstance(value, str) and value.strip().startswith("{"):
        value = _table()(value)  # DOORMAN_SMTP_URL='{"url": ..., "password": ...}'
    if isinstance(value, Mapping):
        if set(value) != {"url", "password"}:
            raise _Bad(
                'give a URL, or a table {url = "smtp://user@host:587", password = '
                '{"$file" = "/run/secrets/smtp"}}'
            )
        try:
            value = with_password(value["url"], value["password"])
        except ValueError as error:
            raise _Bad(str(error)) from None
    if not isinstance(value, str):
        raise _Bad(f"give a URL such as {EXAMPLE}")
    try:
        parse_smtp_url(value)
    except ValueError as error:
        raise _Bad(str(error)) from None
    return value.strip()


def _email_from(value: object) -> str:
    from .mail.addresses import check_sender

    try:
        return check_sender(_text(value))
    except ValueError as error:
        raise _Bad(f"{error}; or with a name, Doorman <noreply@example.com>") from None


def _origins(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(o, str) for o in value):
        raise _Bad("give a list of origins (comma-separated in the environment)")
    origins = tuple(o.strip().rstrip("/") for o in value if o.strip())
    for origin in origins:
        try:
            normalize_origin(origin)
        except ValueError as error:
            raise _Bad(str(error)) from None
    return origins


def _allowed_origins(value: object) -> tuple[str, ...]:
    from .origins import AllowedOrigins

    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(o, str) for o in value):
        raise _Bad("give a list of origins (comma-separated in the environment)")
    origins = tuple(o.strip().rstrip("/") for o in value if o.strip())
    try:
        AllowedOrigins(origins)
    except ValueError as error:
        raise _Bad(str(error)) from None
    return origins


def normalize_origin(origin: str) -> str:
    """``https://App.example.com:443/`` as a browser's Origin header says it.

    Raises ``ValueError`` for anything but an http(s) origin, ``*`` included:
    with credentials, a wildcard would hand every site the user's session.
    """
    if origin.strip() == "*":
        raise ValueError(
            "'*' would let every site read answers made with the user's cookie; list the "
            "origins, such as https://app.example.com"
        )
    parts = urllib.parse.urlsplit(origin.strip().rstrip("/").lower())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or port == -1:
        raise ValueError(f"{origin!r} is not an origin; give ones like https://app.example.com")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def _addresses(value: object) -> str:
    entries = [e.strip() for e in _text(value).split(",") if e.strip()]
    for entry in entries:
        try:
            if entry != "*":
                ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise _Bad(
                f"{entry!r} is not an address; give IPs or networks, comma-separated, "
                "such as 127.0.0.1,10.0.0.0/8 (* trusts every client: only behind a proxy)"
            ) from None
    return ",".join(entries)


def _site_name(value: object) -> str:
    name = _text(value)
    if len(name) > 100:
        raise _Bad("give at most 100 characters")
    return name


def _path_prefixes(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise _Bad(
            'give a list of paths such as ["/static/", "/health"] (comma-separated in '
            "the environment)"
        )
    paths = tuple(p.strip() for p in value if p.strip())
    for path in paths:
        segments = path.split("/")
        if not path.startswith("/") or _UNSAFE_PATH.search(path) or {".", ".."} & set(segments):
            raise _Bad(
                f"{path!r} is not a plain path; give ones that start with /, such as /static/ "
                "(no . or .. segments, no ?, # or spaces)"
            )
    return paths
