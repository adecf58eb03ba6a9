"""How each setting's value is read and checked: the parsers behind ``doorman.config.SETTINGS``.

Each parser takes what came from the file, the environment or a flag and
returns the clean value, or raises ``Bad`` with a message that says what is
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

from ._extras import needs_extra
from ._times import parse_duration
from .db.engine import async_url, in_memory
from .exceptions import ConfigError
from .origins import AllowedOrigins, normalize_origin
from .signing import MAKE_A_SECRET, MIN_SECRET_LENGTH

_SIZE = re.compile(r"(\d+)\s*(|b|k|kb|kib|m|mb|mib)")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024}
_SIZE_UNITS.update(m=1024**2, mb=1024**2, mib=1024**2)
_ROUTE_PREFIX = re.compile(r"/(?:[A-Za-z0-9._~-]+/)+")  # not / alone: the pages need their own
_DOMAIN = re.compile(r"\.?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}")
_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f\\?#]")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f\\]")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class Bad(Exception):
    """A value is wrong; the message says how and how to fix it (no value in it)."""


# -- parsers: a value from TOML, JSON or the environment (text) in, a checked value out --


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Bad("give some text")
    return value.strip()


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None (or empty text, as from ``DOORMAN_X=``) means "not set"."""

    def parse_optional(value: object) -> Any:
        return None if value is None or value == "" else parse(value)

    return parse_optional


def integer(low: int, high: int, example: int) -> Callable[[Any], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if type(value) is not int or not low <= value <= high:
            raise Bad(f"give a whole number from {low} to {high}, such as {example}")
        return value

    return parse


def seconds(low: int, example: str) -> Callable[[Any], int]:
    def parse(value: object) -> int:
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]
        except ValueError:
            seconds = -1
        if seconds < low:
            unit = "second" if low == 1 else "seconds"
            raise Bad(f"give at least {low} {unit}, as a number or a duration such as {example}")
        return seconds

    return parse


def size(low: int, high: int, example: str) -> Callable[[Any], int]:
    """A size: bytes, or a number with a unit, ``64KB`` or ``1MB`` (multiples of 1024)."""

    def parse(value: object) -> int:
        size = -1
        if type(value) is int:
            size = value
        elif isinstance(value, str) and (found := _SIZE.fullmatch(value.strip().lower())):
            size = int(found[1]) * _SIZE_UNITS[found[2]]
        if not low <= size <= high:
            raise Bad(
                f"give a size from {low} bytes to {high // 1024**2} MB, as bytes or with a unit "
                f"such as {example}"
            )
        return size

    return parse


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Bad("give true or false (from the environment also 1/0, yes/no)")


def registration(value: object) -> str:
    if value not in ("closed", "invite", "open"):
        raise Bad('give "closed", "invite" (by invitation only) or "open"')
    return str(value)


def two_factor_policy(value: object) -> str:
    if value not in ("none", "admins", "everyone"):
        raise Bad('give "none", "admins" (admins must have a second factor) or "everyone"')
    return str(value)


def rp_id(value: object) -> str:
    """A WebAuthn relying-party id: a host name (no scheme, port or path; not an IP address)."""
    name = text(value).strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or any(not label or len(label) > 63 for label in labels):
        raise Bad("give a host name such as example.com")
    if not all(c.isalnum() or c in "-." for c in name) or labels[-1].isdigit():
        raise Bad("give a host name such as example.com (not an address, no scheme or port)")
    return name


def choice_of_store(value: object) -> str:
    spec = text(value)
    if spec in ("db", "cookie", "memory"):
        return spec
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return _redis_url(spec)
    raise Bad("give db (the database), cookie, memory or a redis:// URL")


def _redis_url(url: str) -> str:
    """What redis-py would refuse (or misread) only once the server starts."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        raise Bad("the port is not a number from 1 to 65535; give one such as 6379") from None
    if parts.scheme == "unix" and not parts.path:
        raise Bad("give the socket's path, such as unix:///run/redis/redis.sock")
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise Bad("the path is the database number; give one such as redis://host:6379/0")
    return url


def database(value: object) -> str:
    db = text(value)
    try:
        url = async_url(db)
    except ConfigError as error:
        raise Bad(str(error).removeprefix("db: ")) from None
    if url.get_backend_name() == "sqlite" and in_memory(url):
        raise Bad(  # each command, and each worker, would have an empty one of its own
            "a SQLite database in memory lasts one process; give a file such as doorman.db"
        )
    return db


def secrets(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = re.split(r"[,\n]", value)
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
        raise Bad("give a list of secrets, newest first (comma-separated in the environment)")
    found = tuple(s.strip() for s in value if s.strip())
    for position, secret in enumerate(found, 1):
        if len(secret) < MIN_SECRET_LENGTH:
            raise Bad(
                f"secret #{position} is {len(secret)} characters long; give at least "
                f"{MIN_SECRET_LENGTH}, such as the output of: {MAKE_A_SECRET}"
            )
    return found or None


def route_prefix(value: object) -> str:
    prefix = text(value)
    if not _ROUTE_PREFIX.fullmatch(prefix):
        raise Bad("give a path that starts and ends with /, such as /-/ or /auth/ (not / alone)")
    return prefix


def public_url(value: object) -> str:
    url = text(value)
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise Bad("give the sign-in server's external base URL, such as https://auth.example.com")
    return url.rstrip("/")


def login_redirect(value: object) -> str:
    """A path on this site, or an absolute http(s) URL (its host is checked at start-up)."""
    target = text(value)
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:  # a broken [IPv6] host
        parts = None
    if parts is not None and not parts.fragment and not _UNSAFE_URL.search(target):
        if target.startswith("/") and not target.startswith("//") and not parts.netloc:
            return target
        if parts.scheme in ("http", "https") and parts.hostname and not parts.username:
            return target
    raise Bad(
        "give a path on this site, such as /, or an absolute URL on an allowed origin "
        "(public_url's, or one of allowed_origins), such as https://app.example.com/"
    )


def cookie_domain(value: object) -> str:
    domain = text(value).lower()
    if not _DOMAIN.fullmatch(domain):
        raise Bad("give a domain name only (no scheme, port or path), such as example.com")
    return domain


def directory(value: object) -> str:
    path = text(value)
    if not Path(path).is_dir():
        raise Bad("give an existing directory (relative paths start at the working directory)")
    return path


def table(check: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Any], Any]:
    def parse(value: object) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise Bad("give a TOML table (in the environment: a JSON object)") from None
        if not isinstance(value, Mapping):
            raise Bad("give a TOML table (in the environment: a JSON object)")
        found = copy.deepcopy(dict(value))
        if check is not None:
            check(found)
        return found

    return parse


def check_rules(table: dict[str, Any]) -> None:
    from .accounts.permissions import Rules

    try:
        Rules(table)
    except ConfigError as error:
        raise Bad(f"{error} (see docs/permissions.md)") from None


def sentry(value: object) -> dict[str, Any]:
    options: dict[str, Any]
    if isinstance(value, str) and value.strip().startswith(("http://", "https://")):
        options = {"dsn": value.strip()}  # DOORMAN_SENTRY=https://key@sentry.example.com/1
    else:
        options = table()(value)
    if options and not isinstance(options.get("dsn"), str):
        raise Bad('give a table with at least "dsn", such as {dsn = "https://...@.../1"}')
    if options:
        try:
            check_sentry_options(options)
        except ConfigError as error:
            raise Bad(str(error).removeprefix("sentry: ")) from None
    return options


def smtp_url(value: object) -> str:
    """A URL; or a table ``{url = "smtp://user@host:587", password = {"$file" = ...}}``."""
    from .mail.smtp_url import EXAMPLE, parse_smtp_url, with_password

    if isinstance(value, str) and value.strip().startswith("{"):
        value = table()(value)  # DOORMAN_SMTP_URL='{"url": ..., "password": ...}'
    if isinstance(value, Mapping):
        if set(value) != {"url", "password"}:
            raise Bad(
                'give a URL, or a table {url = "smtp://user@host:587", password = '
                '{"$file" = "/run/secrets/smtp"}}'
            )
        try:
            value = with_password(value["url"], value["password"])
        except ValueError as error:
            raise Bad(str(error)) from None
    if not isinstance(value, str):
        raise Bad(f"give a URL such as {EXAMPLE}")
    try:
        parse_smtp_url(value)
    except ValueError as error:
        raise Bad(str(error)) from None
    return value.strip()


def email_from(value: object) -> str:
    from .mail.addresses import check_sender

    try:
        return check_sender(text(value))
    except ValueError as error:
        raise Bad(f"{error}; or with a name, Doorman <noreply@example.com>") from None


def origins(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(o, str) for o in value):
        raise Bad("give a list of origins (comma-separated in the environment)")
    origins = tuple(o.strip().rstrip("/") for o in value if o.strip())
    for origin in origins:
        try:
            normalize_origin(origin)
        except ValueError as error:
            raise Bad(str(error)) from None
    return origins


def allowed_origins(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(o, str) for o in value):
        raise Bad("give a list of origins (comma-separated in the environment)")
    origins = tuple(o.strip().rstrip("/") for o in value if o.strip())
    try:
        AllowedOrigins(origins)
    except ValueError as error:
        raise Bad(str(error)) from None
    return origins


def addresses(value: object) -> str:
    entries = [e.strip() for e in text(value).split(",") if e.strip()]
    for entry in entries:
        try:
            if entry != "*":
                ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise Bad(
                f"{entry!r} is not an address; give IPs or networks, comma-separated, "
                "such as 127.0.0.1,10.0.0.0/8 (* trusts every client: only behind a proxy)"
            ) from None
    return ",".join(entries)


def site_name(value: object) -> str:
    name = text(value)
    if len(name) > 100:
        raise Bad("give at most 100 characters")
    return name


def path_prefixes(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise Bad(
            'give a list of paths such as ["/static/", "/health"] (comma-separated in '
            "the environment)"
        )
    paths = tuple(p.strip() for p in value if p.strip())
    for path in paths:
        segments = path.split("/")
        if not path.startswith("/") or _UNSAFE_PATH.search(path) or {".", ".."} & set(segments):
            raise Bad(
                f"{path!r} is not a plain path; give ones that start with /, such as /static/ "
                "(no . or .. segments, no ?, # or spaces)"
            )
    return paths


#: Options that would put cookies, addresses or local variables (passwords) in events;
#: ``data_collection`` also turns off the SDK's own scrubber.
_REFUSED = ("send_default_pii", "include_local_variables", "data_collection", "before_send")


def check_sentry_options(options: Mapping[str, Any]) -> None:
    """Refuse what ``setup_sentry`` would: when settings are loaded, before anything starts."""
    with needs_extra("sentry", "the sentry setting"):
        from sentry_sdk.consts import DEFAULT_OPTIONS
        from sentry_sdk.utils import BadDsn, Dsn
    refused = [name for name in _REFUSED if name in options]
    if refused:
        raise ConfigError(
            f"sentry: remove {refused[0]}; doorman keeps cookies, addresses, passwords and "
            "tokens out of Sentry events and sets what the SDK collects itself"
        )
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(
            f"sentry: unknown option {unknown[0]!r}; see the options of sentry_sdk.init"
        )
    if options.get("dsn"):
        try:
            Dsn(options["dsn"])
        except BadDsn as error:  # its message names the part, never the key
            raise ConfigError(
                f"sentry: the dsn is not a Sentry DSN ({error}); copy it from the project's "
                "settings, Client Keys"
            ) from None
