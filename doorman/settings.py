"""Settings: one table of name, default and help, read from a TOML file, the environment
and command-line flags, checked once at start-up.

Precedence, lowest first: the defaults in ``SETTINGS``; ``doorman.toml`` (or the
file given with ``--config``/``DOORMAN_CONFIG``); ``DOORMAN_<NAME>`` environment
variables; flags. In the file any value may be ``{"$env" = "NAME"}`` or
``{"$file" = "PATH"}``. Every bad value raises ``ConfigError`` with one line that
names the setting, the value (``<hidden>`` for secrets) and a fix. See
docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import _parsers as parse
from ._times import parse_duration
from .exceptions import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "SERVE_SETTINGS_ENV",
    "SETTINGS",
    "Setting",
    "Settings",
    "load_settings",
    "parse_duration",
]

DEFAULT_CONFIG_FILE = "doorman.toml"
#: ``doorman serve`` hands the resolved settings to its uvicorn workers in this variable.
SERVE_SETTINGS_ENV = "DOORMAN_SERVE_SETTINGS"

# -- the table ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its name (the TOML key), default, help and how its value is checked."""

    name: str
    default: Any
    help: str
    parse: Callable[[Any], Any]
    #: Never shown in messages or ``repr``: ``<hidden>`` instead.
    hidden: bool = False

    @property
    def env(self) -> str:
        return "DOORMAN_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("db", "doorman.db",
            "SQLite path or postgresql:// URL for users, tokens and more.", parse.database),
    Setting("sessions", "db",
            "Session store: db (the database), cookie, memory or a redis:// URL.",
            parse.choice_of_store),
    Setting("secret", None,
            "Secrets that sign cookies, newest first, each at least 32 characters; unset: one "
            "is made on first start and kept in the database.",
            parse.optional(parse.secrets), hidden=True),
    Setting("host", "127.0.0.1", "Address the sign-in server listens on.", parse.text),
    Setting("port", 8000, "Port the sign-in server listens on.", parse.integer(1, 65535, 8000)),
    Setting("workers", 1, "Worker processes of the sign-in server.", parse.integer(1, 512, 4)),
    Setting("db_pool_size", 20,
            "Most connections each process opens to a PostgreSQL database; workers times this "
            "must stay under its max_connections (100 by default).",
            parse.integer(1, 1000, 20)),
    Setting("route_prefix", "/-/", "Path under which doorman's pages live.", parse.route_prefix),
    Setting("site_name", "doorman", "Name shown on the sign-in pages.", parse.site_name),
    Setting("public_url", None,
            "The sign-in server's external base URL, such as https://auth.example.com; "
            "forward-auth redirects browsers to its login page.", parse.optional(parse.public_url)),
    Setting("cookie_domain", None,
            "Domain of the session cookie, to share it with sibling subdomains (example.com); "
            "unset: this host only.", parse.optional(parse.cookie_domain)),
    Setting("cookie_secure", False,
            "Always mark the session cookie Secure (it is on https anyway).", parse.boolean),
    Setting("session_max_age", 1209600,
            "How long a session lasts: seconds, or a duration such as 14d.",
            parse.seconds(60, "14d")),
    Setting("idle_timeout", None,
            "End a session after this long without a request; unset: never.",
            parse.optional(parse.seconds(60, "30m"))),
    Setting("absolute_timeout", None,
            "End a session this long after sign-in, whatever happens; unset: never.",
            parse.optional(parse.seconds(60, "12h"))),
    Setting("allow_registration", False,
            "Let visitors create their own accounts at /-/register.", parse.boolean),
    Setting("registration", None,
            'Who may make an account: "closed" (admins only), "invite" (by invitation) or '
            '"open" (anyone, at /-/register); unset: allow_registration says.',
            parse.optional(parse.registration)),
    Setting("email_sign_in", False,
            "Offer sign-in by a one-time link sent to the account's address (needs smtp_url).",
            parse.boolean),
    Setting("require_verified_email", False,
            "Refuse sign-in to accounts (admins aside) whose email address is not verified.",
            parse.boolean),
    Setting("login_redirect", None,
            "Where a sign-in without next lands: a path, or a URL on an allowed origin "
            "(public_url's, allowed_origins); unset: the account page (serve), / (protect).",
            parse.optional(parse.login_redirect)),
    Setting("max_body_size", 65536,
            "Largest request body doorman's routes read (bytes, or 64KB, 1MB); a bigger one "
            "gets 413.", parse.size(1024, 1024**3, "64KB")),
    Setting("basic_auth", False,
            "Accept HTTP Basic credentials as well as sessions and API tokens.", parse.boolean),
    Setting("access_log", True,
            "Log one line per request (path without query string) on doorman.access.",
            parse.boolean),
    Setting("throttle_per_account", 5,
            "Failed sign-ins allowed per account per window, for new browsers and for each "
            "browser that signed in before (0: no limit).",
            parse.integer(0, 1_000_000, 5)),
    Setting("throttle_per_address", 20,
            "Failed sign-ins allowed per client address per window (0: no limit).",
            parse.integer(0, 1_000_000, 20)),
    Setting("throttle_registrations", 10,
            "Registration attempts allowed per client address per window (0: no limit).",
            parse.integer(0, 1_000_000, 10)),
    Setting("throttle_window", 900,
            "Seconds (or a duration such as 15m) over which attempts are counted.",
            parse.seconds(1, "15m")),
    Setting("events_retention", 7776000,
            "How long the security event log keeps events (seconds, or a duration such as "
            "90d); doorman events prune removes older ones.", parse.seconds(3600, "90d")),
    Setting("password_reset_max_age", 3600,
            "How long a password-reset link works: seconds, or a duration such as 1h.",
            parse.seconds(60, "1h")),
    Setting("require_two_factor", "none",
            'Who must have a second factor: "none", "admins" or "everyone"; those it covers '
            "enrol at their next sign-in before reaching anything else.",
            parse.two_factor_policy),
    Setting("step_up_after", 300,
            "Changing the password, the email address or the second factors, and creating API "
            "tokens, ask for a password or a factor again once the last proof is older than "
            "this (seconds, or a duration such as 5m).", parse.seconds(30, "5m")),
    Setting("webauthn_rp_id", None,
            "The passkeys' relying-party id: a host name that is the sign-in server's host or "
            "a parent of it; unset: public_url's host (else the request's).",
            parse.optional(parse.rp_id)),
    Setting("password_min_length", 10,
            "Fewest characters a new password may have (at least 8).", parse.integer(8, 4096, 10)),
    Setting("template_dir", None,
            "Directory of templates that override the sign-in pages' own.",
            parse.optional(parse.directory)),
    Setting("plugins_dir", None, "Directory of *.py plugin files to load.",
            parse.optional(parse.directory)),
    Setting("permissions", {},
            "Permission rules: a table per action, see docs/permissions.md.",
            parse.table(parse.check_rules)),
    Setting("forwarded_allow_ips", "127.0.0.1",
            "Proxies (IPs or networks, comma-separated) whose X-Forwarded-For and "
            "X-Forwarded-Proto headers are trusted.", parse.addresses),
    Setting("cors_origins", [], "Origins allowed to call the JSON API from browsers.",
            parse.origins),
    Setting("allowed_origins", [],
            "Other origins trusted with the session: a sign-in may return there and their pages "
            "may open websockets; https://*.example.com for every host under a domain.",
            parse.allowed_origins),
    Setting("public_paths", [],
            "Paths (prefixes) that doorman protect serves without sign-in, such as /static/.",
            parse.path_prefixes),
    Setting("sentry", {},
            "Sentry options (at least dsn), or a DSN; empty: no Sentry.",
            parse.sentry, hidden=True),
    Setting("smtp_url", None,
            "Mail server: smtp://user:password@host:587 (STARTTLS), smtps://host:465 (TLS) or "
            "smtp://127.0.0.1:1025 (a local relay); unset: no mail is sent.",
            parse.optional(parse.smtp_url), hidden=True),
    Setting("email_from", None,
            "The address messages come from, such as Doorman <noreply@example.com>.",
            parse.optional(parse.email_from)),
)
# fmt: on
_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings; build them with ``load_settings`` or ``Settings.from_mapping``."""

    db: str
    sessions: str
    secret: tuple[str, ...] | None = dataclasses.field(repr=False)
    host: str
    port: int
    workers: int
    db_pool_size: int
    route_prefix: str
    site_name: str
    public_url: str | None
    cookie_domain: str | None
    cookie_secure: bool
    session_max_age: int
    idle_timeout: int | None
    absolute_timeout: int | None
    allow_registration: bool
    registration: str | None
    email_sign_in: bool
    require_verified_email: bool
    login_redirect: str | None
    max_body_size: int
    basic_auth: bool
    access_log: bool
    throttle_per_account: int
    throttle_per_address: int
    throttle_registrations: int
    throttle_window: int
    events_retention: int
    password_reset_max_age: int
    require_two_factor: str
    step_up_after: int
    webauthn_rp_id: str | None
    password_min_length: int
    template_dir: str | None
    plugins_dir: str | None
    permissions: dict[str, Any]
    forwarded_allow_ips: str
    cors_origins: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    public_paths: tuple[str, ...]
    sentry: dict[str, Any] = dataclasses.field(repr=False)
    smtp_url: str | None = dataclasses.field(repr=False)
    email_from: str | None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "settings") -> Settings:
        """Check ``values`` (name -> value; the rest default) and build ``Settings``."""
        return _build({name: (value, source) for name, value in values.items()})

    @property
    def registration_mode(self) -> str:
        """``registration``, or what the older ``allow_registration`` says: open or closed."""
        return self.registration or ("open" if self.allow_registration else "closed")

    def to_json(self) -> str:
        """Every setting as JSON, secrets included: hand it only to trusted processes."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, *, source: str = "JSON settings") -> Settings:
        """The ``Settings`` that ``to_json`` wrote, checked again."""
        try:
            values = json.loads(text)
        except ValueError:
            raise ConfigError(f"{source}: not valid JSON; pass Settings.to_json()") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: not a JSON object; pass Settings.to_json()")
        return cls.from_mapping(values, source=source)


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] = {},
) -> Settings:
    """Defaults < TOML file < ``DOORMAN_<NAME>`` variables < ``overrides`` (None: not given).

    ``config_file`` (else ``DOORMAN_CONFIG``) must exist; without either,
    ``doorman.toml`` in the working directory is read when it is there.
    """
    values: dict[str, tuple[Any, str]] = {}
    explicit = config_file if config_file is not None else environ.get("DOORMAN_CONFIG") or None
    path = Path(explicit if explicit is not None else DEFAULT_CONFIG_FILE)
    if explicit is not None or path.is_file():
        values.update((k, (v, str(path))) for k, v in _read_file(path, environ).items())
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.name] = (environ[setting.env], setting.env)
    for name, value in overrides.items():
        if name not in _BY_NAME:
            raise ConfigError(f"unknown setting {name!r}{_suggestion(name)}")
        if value is not None:
            values[name] = (value, _BY_NAME[name].flag)
    return _build(values)


def _build(values: Mapping[str, tuple[Any, str]]) -> Settings:
    for name, (_, source) in values.items():
        if name not in _BY_NAME:
            raise ConfigError(f"{source}: unknown setting {name!r}{_suggestion(name)}")
    checked = {}
    for setting in SETTINGS:
        value, source = values.get(setting.name, (setting.default, "default"))
        try:
            checked[setting.name] = setting.parse(value)
        except parse.Bad as error:
            shown = "<hidden>" if setting.hidden else _show(value)
            raise ConfigError(f"{setting.name} = {shown} (from {source}): {error}") from None
    return Settings(**checked)


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
    fix = f"; did you mean {close[0]!r}?" if close else ""
    return f"{fix} The settings are listed in docs/configuration.md"


def _show(value: object) -> str:
    """A value for a message: one line, short, and without a password in a URL."""
    if isinstance(value, str) and "://" in value:
        parts = urllib.parse.urlsplit(value)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            value = parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _read_file(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} does not exist; fix the --config/DOORMAN_CONFIG path"
        ) from None
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML ({error}); fix that line") from None
    for key in data:
        if key not in _BY_NAME:
            raise ConfigError(f"{path}: unknown setting {key!r}{_suggestion(key)}")
    return {key: _resolve(value, key, path, environ) for key, value in data.items()}


def _resolve(value: Any, name: str, path: Path, environ: Mapping[str, str]) -> Any:
    """Replace ``{"$env" = NAME}`` and ``{"$file" = PATH}`` anywhere in a value."""
    if isinstance(value, dict):
        if set(value) == {"$env"}:
            variable = value["$env"]
            if not isinstance(variable, str) or variable not in environ:
                raise ConfigError(
                    f'{name} = {{"$env" = {variable!r}}} in {path}: that environment '
                    "variable is not set; set it, or give the value in the file"
                )
            return environ[variable]
        if set(value) == {"$file"}:
            return _read_value_file(value["$file"], name, path)
        return {k: _resolve(v, name, path, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(item, name, path, environ) for item in value]
    return value


def _read_value_file(target: object, name: str, path: Path) -> str:
    """A ``$file`` value: relative to the config file, without its trailing newline."""
    where = f'{name} = {{"$file" = {target!r}}} in {path}'
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{where}: give a file path")
    try:
        text = (path.parent / target).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{where}: cannot read it ({reason}); create it or fix the path"
        ) from None
    return text.removesuffix("\n").removesuffix("\r")
