"""How ``serve`` and ``protect`` run uvicorn: the port checked first, the set-up link last.

The port is tried before anything else happens, so that a port in use is one
line rather than a fresh set-up link followed by uvicorn's error. The link is
printed once the server listens: just before uvicorn's "Uvicorn running on"
line with one worker; with several, once the first of them answers (uvicorn's
parent process says "running" before any worker listens).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import click

from .._extras import needs_extra
from ..settings import Settings
from ._options import one_line_errors

__all__ = ["check_can_listen", "run_uvicorn", "setup_url", "uvicorn_options"]

#: How long, at most, the set-up link waits for a worker of ``--workers N`` to listen.
_WORKERS_START_SECONDS = 120.0


def check_can_listen(settings: Settings) -> None:
    """One line and exit 1 unless uvicorn is installed and ``host``:``port`` is free now."""
    with one_line_errors(), needs_extra("server", "the sign-in server"):
        import uvicorn  # noqa: F401
    host, port = settings.host, settings.port
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.ClickException(
            f"cannot listen on {host!r}: {error.strerror}; give an address of this machine "
            "with --host, such as 127.0.0.1"
        ) from None
    for family, kind, protocol, _, address in dict.fromkeys(found):
        try:
            _try_listening(family, kind, protocol, address)
        except OSError as error:
            raise click.ClickException(_cannot_listen(host, port, error)) from None


def _try_listening(family: int, kind: int, protocol: int, address: Any) -> None:
    """Listen as uvicorn would, for a moment: a port in TIME_WAIT is free, one in LISTEN is not."""
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as asyncio's create_server: IPv6 only, IPv4 apart
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(address)
        probe.listen()


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use: another server listens there; stop it or use --port"
        )
    if error.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges this user lacks; use --port above 1023"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: not an address of this machine; fix --host"
    return f"cannot listen on port {port} on {host}: {error.strerror}; fix --host or --port"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``serve`` and ``protect`` run uvicorn (the app aside)."""
    from ..server.access_log import uvicorn_log_config

    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_level": "info",
        "log_config": uvicorn_log_config(settings.access_log),
        "access_log": False,  # doorman's own, without query strings: see server/access_log.py
        "lifespan": "on",  # a failed start-up stops the server rather than serving without it
        "server_header": False,  # no "server: uvicorn" advertised on every answer
    }


def run_uvicorn(app: Any, settings: Settings, setup_token: str | None) -> None:
    """Serve ``app``; print the set-up link (for ``setup_token``) once the server listens."""
    import uvicorn

    announcement = None if setup_token is None else _SetupLink(settings, setup_token)
    with _announced(announcement):
        uvicorn.run(app, **uvicorn_options(settings))


def setup_url(settings: Settings, token: str) -> str:
    base = settings.public_url or f"http://{_url_host(_local(settings.host))}:{settings.port}"
    return f"{base}{settings.route_prefix}setup?token={urllib.parse.quote(token)}"


def _local(host: str) -> str:
    """Where this machine reaches a server listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _announced(announcement: _SetupLink | None) -> Iterator[None]:
    if announcement is None:
        yield
        return
    logger = logging.getLogger("uvicorn.error")  # uvicorn's own messages, despite the name
    logger.addFilter(announcement)
    try:
        yield
    finally:
        logger.removeFilter(announcement)


class _SetupLink(logging.Filter):
    """Prints the set-up link when uvicorn logs that it is running (and lets that line pass)."""

    def __init__(self, settings: Settings, token: str) -> None:
        super().__init__()
        self.text = f"Create the first admin at {setup_url(settings, token)}"
        self.address = (_local(settings.host), settings.port)
        self.workers = settings.workers
        self.printed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.printed and record.getMessage().startswith("Uvicorn running on"):
            self.printed = True
            if self.workers == 1:  # it listens already: the link is the line before this one
                click.echo(self.text)
            else:
                threading.Thread(target=self._print_once_listening, daemon=True).start()
        return True

    def _print_once_listening(self) -> None:
        deadline = time.monotonic() + _WORKERS_START_SECONDS
        while time.monotonic() < deadline:
            if _accepts(self.address):
                click.echo(self.text)
                return
            time.sleep(0.1)


def _accepts(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False
