"""``/-/admin``: users, every sign-in, every API token, security events; for admins only.

Each page answers JSON to API clients and HTML to browsers, like ``/-/account``.
Every change is a CSRF-checked POST that redirects back (303) with ``?done=``,
which picks one of the fixed ``NOTICES``: nothing from the URL is shown as is.
An admin cannot disable, demote or delete themselves, so one admin always remains.

``users`` is the list of users and new users, ``user`` one user's page and
actions, ``links`` the reset link an admin sends or hands over, ``lists``
every sign-in and every token, ``events`` the security event log, ``invitations`` who was invited.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from ._common import NOTICES
from .events import events_page
from .invitations import invitations_page
from .links import reset_link_action
from .lists import revoke_any_signin, revoke_any_token, sessions_page, tokens_page
from .user import delete_user, revoke_user_signin, revoke_user_token, user_action, user_page
from .users import PAGE_SIZE, admin_home, users_page

__all__ = ["NOTICES", "PAGE_SIZE", "routes"]


def routes(prefix: str) -> list[BaseRoute]:
    base = f"{prefix}/admin"
    one = f"{base}/users/{{username}}"
    return [
        Route(base, admin_home),
        Route(f"{base}/users", users_page, methods=["GET", "POST"]),
        Route(one, user_page),
        Route(f"{one}/delete", delete_user, methods=["GET", "POST"]),
        Route(f"{one}/sessions/{{item}}/revoke", revoke_user_signin, methods=["POST"]),
        Route(f"{one}/tokens/{{item}}/revoke", revoke_user_token, methods=["POST"]),
        Route(f"{one}/reset-link", reset_link_action, methods=["POST"]),
        Route(f"{one}/{{action}}", user_action, methods=["POST"]),
        Route(f"{base}/sessions", sessions_page),
        Route(f"{base}/sessions/{{item}}/revoke", revoke_any_signin, methods=["POST"]),
        Route(f"{base}/tokens", tokens_page),
        Route(f"{base}/tokens/{{item}}/revoke", revoke_any_token, methods=["POST"]),
        Route(f"{base}/events", events_page),
        Route(f"{base}/invitations", invitations_page, methods=["GET", "POST"]),
    ]
