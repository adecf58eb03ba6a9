"""A members-only page: a bare ASGI app that `doorman protect` serves behind sign-in.

    doorman users create alice
    doorman protect examples.members:app --public-paths /about

Every path but /about needs a signed-in user; doorman's pages are under /-/.
"""

import html


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan events or websockets here; doorman protect copes with that
    actor = scope["actor"]  # set by doorman: None only on a public path
    if actor is None:
        page = '<p>Anyone may read this. <a href="/-/login?next=/">Sign in</a> for more.</p>'
    else:
        name = html.escape(actor["username"])
        page = f'<h1>Hello, {name}</h1><p><a href="/-/account">Your account</a></p>'
    body = f'<!doctype html><meta charset="utf-8"><title>Members</title>{page}'.encode()
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
