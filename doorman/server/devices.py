"""What a person calls the browser behind a user-agent string: "Chrome on Linux".

The parsing is ua-parser's: its rules follow new browsers as they appear,
which no pattern list of our own would. Its first call loads those rules
(up to a second or two), so parsing runs on a worker thread, never on the
event loop, and names worked out once are kept.
"""

from __future__ import annotations

import asyncio

import ua_parser

__all__ = ["UNKNOWN_DEVICE", "describe", "device_name"]

UNKNOWN_DEVICE = "Unknown device"
_KEPT = 2048
_names: dict[str, str] = {}


def device_name(user_agent: str | None) -> str:
    """ "Chrome on Linux", "curl", "Android device"; ``UNKNOWN_DEVICE`` when nothing is known."""
    if not user_agent:
        return UNKNOWN_DEVICE
    found = ua_parser.parse(user_agent)
    browser = found.user_agent.family if found.user_agent else None
    system = found.os.family if found.os else None
    if browser and system:
        return f"{browser} on {system}"
    if browser:
        return browser
    if system:
        return f"{system} device"
    return UNKNOWN_DEVICE


async def describe(user_agent: str | None) -> str:
    """``device_name``, worked out on a worker thread unless it is known already."""
    if not user_agent:
        return UNKNOWN_DEVICE
    name = _names.get(user_agent)
    if name is None:
        name = await asyncio.to_thread(device_name, user_agent)
        if len(_names) >= _KEPT:
            del _names[next(iter(_names))]  # the oldest
        _names[user_agent] = name
    return name
