"""Sentry: errors in doorman and the app behind it, with the actor id and no secrets.

Needs the ``sentry`` extra (``pip install 'doorman[sentry]'``). ``doorman serve``
turns it on from the ``sentry`` setting; an app of your own can do the same::

    from doorman.integrations.sentry import with_sentry

    app = with_sentry(app, {"dsn": "https://key@sentry.example.com/1"})

Events carry the actor's id as the user, never a username or email. Three
layers keep secrets out, since any one of them can miss: the SDK runs with
``send_default_pii=False`` and no local variables; every event and breadcrumb
has secret-looking keys (cookies, ``Authorization``, ``X-CSRFToken``, password
and token fields) and patterns (``dmt_`` API tokens, ``Bearer ...``, passwords
in URLs, ``token=...`` in query strings) replaced; and each request's own
secrets (its cookie values, credentials, and password and token fields of a
form or JSON body) are replaced wherever they appear, even inside an
exception's message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, quote, quote_plus

from .._parsers import check_sentry_options
from .._scope import header
from .._types import ASGIApp, Message, Receive, Scope, Send
from ..exceptions import ConfigError

if TYPE_CHECKING:
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

__all__ = ["SentryMiddleware", "scrub_breadcrumb", "scrub_event", "setup_sentry", "with_sentry"]

FILTERED = "[Filtered]"

#: Any key holding one of these (lower case, "-" read as "_") has its value replaced.
_SECRET_KEY = re.compile(
    r"pass|pwd|secret|token|csrf|cookie|authori[sz]ation|session|api_?key|credential|signature",
)
_SECRET_TEXT = (
    (re.compile(r"dmt_[A-Za-z0-9_-]{6,}"), FILTERED),  # doorman API tokens
    (re.compile(r"\b([Bb]earer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{FILTERED}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), rf"\1{FILTERED}@"),
    (
        re.compile(
            r"(?i)\b([\w.-]*(?:pass|pwd|secret|token|csrf|session|api_?key|signature)[\w.-]*)"
            r"=[^&\s;,'\"]+"
        ),
        rf"\1={FILTERED}",
    ),
    (  # "password": "..." in the text of a dict or JSON
        re.compile(
            r"(?i)(['\"][\w.-]*(?:pass|pwd|secret|token|csrf|cookie|session|api_?key)[\w.-]*"
            r"['\"]\s*:\s*)(['\"]).*?\2"
        ),
        rf"\1\2{FILTERED}\2",
    ),
)
_MAX_BODY = 64 * 1024
_MIN_SECRET = 4  # shorter values would mangle every string in the event


def setup_sentry(options: Mapping[str, Any], **sdk_options: Any) -> None:
    """Start the Sentry SDK from the ``sentry`` setting, with doorman's scrubbing.

    ``options`` go to ``sentry_sdk.init`` (``dsn``, ``environment``,
    ``traces_sample_rate`` ...); ``sdk_options`` add what a TOML file cannot
    hold, such as a ``transport``.
    """
    check_sentry_options({**options, **sdk_options})
    import sentry_sdk

    try:
        sentry_sdk.init(
            **{**options, **sdk_options},
            include_local_variables=False,  # send_default_pii is off unless set
            before_send=scrub_event,
            before_send_transaction=scrub_event,
            before_breadcrumb=scrub_breadcrumb,
        )
    except TypeError as error:  # an unknown option
        raise ConfigError(f"sentry: {error}; see the options of sentry_sdk.init") from None


def with_sentry(app: ASGIApp, options: Mapping[str, Any], **sdk_options: Any) -> ASGIApp:
    """``app`` reporting to Sentry when ``options`` (the ``sentry`` setting) are given."""
    if not options:
        return app
    setup_sentry(options, **sdk_options)
    return SentryMiddleware(app)


class SentryMiddleware:
    """Reports what escapes ``app``, as the actor id, without this request's secrets.

    Put it outside ``SessionMiddleware``, so that errors there are reported too;
    ``AuthMiddleware`` further in puts the actor in the scope it shares.
    """

    def __init__(self, app: ASGIApp) -> None:
        import sentry_sdk  # here, not at the top: this module loads without the extra

        self.app = app
        self._sdk = sentry_sdk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        with self._sdk.isolation_scope() as sentry_scope:
            sentry_scope.add_event_processor(_RequestProcessor(scope, body))
            try:
                await self.app(scope, _keeping_body(scope, receive, body), send)
            except Exception as error:
                self._sdk.capture_exception(error)
                raise


def _keeping_body(scope: Scope, receive: Receive, body: list[bytes]) -> Receive:
    """``receive`` that also keeps a form or JSON body (up to 64 KiB) to find its secrets in."""
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "application/json"):
        return receive

    async def receive_and_keep() -> Message:
        message = await receive()
        chunk = message.get("body", b"")
        if message["type"] == "http.request" and chunk and sum(map(len, body)) < _MAX_BODY:
            body.append(chunk)
        return message

    return receive_and_keep


class _RequestProcessor:
    """An event processor: the actor id as the user, and this request's secrets taken out."""

    def __init__(self, scope: Scope, body: list[bytes]) -> None:
        self.scope = scope
        self.body = body

    def __call__(self, event: Event, hint: Hint) -> Event:
        actor = self.scope.get("actor")
        if isinstance(actor, Mapping) and "id" in actor:
            event["user"] = {"id": str(actor["id"])}
        else:
            event.pop("user", None)
        request = event.setdefault("request", {})
        request.setdefault("method", self.scope.get("method"))
        request.setdefault("url", _url(self.scope))
        secrets = sorted(set(self._secrets()), key=len, reverse=True)
        if not secrets:
            return event
        return cast("Event", _walk(event, lambda text: _replace_all(text, secrets)))

    def _secrets(self) -> Iterator[str]:
        for name, value in self.scope.get("headers", ()):
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    yield part.partition("=")[2].strip()
            elif name in (b"authorization", b"x-csrftoken", b"proxy-authorization"):
                text = value.decode("latin-1")
                scheme, _, credentials = text.partition(" ")
                yield from (text, credentials.strip())
                if scheme.lower() == "basic":
                    yield _basic_password(credentials)
        query = self.scope.get("query_string", b"").decode("latin-1")
        yield from _secret_values(parse_qsl(query))
        yield from _secret_values(_body_fields(b"".join(self.body)))


def _secret_values(pairs: Iterator[tuple[str, Any]] | list[tuple[str, str]]) -> Iterator[str]:
    for key, value in pairs:
        if isinstance(value, str) and _SECRET_KEY.search(key.lower().replace("-", "_")):
            yield value
            yield quote_plus(value)
            yield quote(value)


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""
    return decoded.partition(":")[2]


def _body_fields(raw: bytes) -> Iterator[tuple[str, Any]]:
    if not raw:
        return iter(())
    text = raw.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            found = json.loads(text)
        except ValueError:
            return iter(())
        return iter(found.items()) if isinstance(found, dict) else iter(())
    return iter(parse_qsl(text))


def _replace_all(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, FILTERED)
    return text


def scrub_event(event: Event, hint: Hint) -> Event:
    """``before_send``: secret keys and secret-looking text replaced, in the whole event."""
    if str(event.get("logger", "")).startswith("doorman.security"):
        _template_only(event.get("logentry"))
    return cast("Event", _walk(event, _scrub_text))


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb:
    """``before_breadcrumb``: the same, and security log lines without their values.

    A failed sign-in line names what was typed as a username, which is
    sometimes the password.
    """
    record = (hint or {}).get("log_record")
    if record is not None and record.name.startswith("doorman.security"):
        crumb["message"] = str(record.msg)
        crumb.pop("data", None)
    return cast("Breadcrumb", _walk(crumb, _scrub_text))


def _template_only(entry: Any) -> None:
    if isinstance(entry, dict):
        entry.pop("params", None)
        entry.pop("formatted", None)


def _scrub_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _walk(value: Any, scrub: Any) -> Any:
    """``value`` with every string passed through ``scrub`` and every secret key filtered."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            key: FILTERED
            if isinstance(key, str)
            and item not in (None, "", {}, [])
            and _SECRET_KEY.search(key.lower().replace("-", "_"))
            else _walk(item, scrub)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_walk(item, scrub) for item in value]
    return value


def _url(scope: Scope) -> str:
    """The request URL without its query string (which ``request.query_string`` holds)."""
    host = header(scope, b"host") or "localhost"
    scheme = scope.get("scheme", "http")
    return f"{scheme}://{host}{scope.get('root_path', '')}{scope.get('path', '')}"
