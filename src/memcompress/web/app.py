"""The pages of ``memcompress web``: an overview (the queue, the requests, jobs in progress, pause, dead
letters, the last runs, the LLM requests and tokens of 24 hours), the dead letters, and one page per
user with what ``memcompress user`` shows. Server-side templates; no script runs in the browser.

What is guaranteed:

- No message content and no summary text on any page: the pages render only what
  :mod:`memcompress.jobs.inspect` and the status report return without ``show_summary`` (counts,
  versions, outcomes, error classes and reasons, which are written without content).
- Read-only unless the app was made with a ``token`` (``--allow-actions``): then, and only then, a
  POST naming the token may retry a dead letter, delete one, pause or resume the queue. A POST
  without the right token is refused (403) and changes nothing; without a token there are no actions
  at all (404). The token is compared in constant time and never rendered into a page.
- Every page sends a Content-Security-Policy that allows no script and forms to this origin only.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from memcompress.bootstrap import open_services
from memcompress.jobs import Services
from memcompress.jobs.inspect import UNKNOWN_USER, inspect_user, overview
from memcompress.settings import Settings

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
DEAD_LETTERS_SHOWN = 1000
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "img-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Action = Callable[[Services, str], Awaitable[str]]


async def _retry(services: Services, user_id: str) -> str:
    queued = await services.queue.request(user_id)
    return f"{user_id}: {'queued' if queued else 'already queued or running; will re-check'}"


async def _delete(services: Services, user_id: str) -> str:
    removed = await services.dead_letters.remove(user_id)
    return f"{user_id}: {'dead letter deleted' if removed else 'no dead letter'}"


async def _pause(services: Services, user_id: str) -> str:
    await services.queue_admin.pause()
    return "queue paused"


async def _resume(services: Services, user_id: str) -> str:
    return "queue resumed" if await services.queue_admin.resume() else "queue was not paused"


ACTIONS: dict[str, Action] = {"retry": _retry, "delete": _delete, "pause": _pause, "resume": _resume}


def create_app(
    settings: Settings, *, token: str | None = None, services: Services | None = None
) -> Starlette:
    """The pages over ``services`` (else services opened from ``settings`` for the app's lifetime);
    actions only with a ``token``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        async with open_services(settings) as opened:
            app.state.services = opened
            yield

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        shown = {"queue": settings.queue_name, "actions": token is not None, "notice": None} | context
        notice = request.query_params.get("done")
        if notice:
            shown["notice"] = notice
        return TEMPLATES.TemplateResponse(request, name, shown, status_code=status, headers=HEADERS)

    async def home(request: Request) -> Response:
        report = await overview(request.app.state.services)
        return page(request, "overview.html", {"report": report})

    async def dead(request: Request) -> Response:
        letters = await request.app.state.services.dead_letters.list(DEAD_LETTERS_SHOWN)
        return page(request, "dead.html", {"letters": [letter.model_dump(mode="json") for letter in letters]})

    async def find_user(request: Request) -> Response:
        user_id = request.query_params.get("id", "").strip()
        return RedirectResponse(f"/users/{quote(user_id, safe='')}" if user_id else "/", status_code=303)

    async def user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        report = await inspect_user(
            request.app.state.services, user_id, archive=settings.store_layout().archive
        )
        if report is None:
            return page(request, "unknown.html", {"user_id": user_id, "message": UNKNOWN_USER}, 404)
        return page(request, "user.html", {"report": report})

    async def act(request: Request) -> Response:
        if token is None:
            return Response("actions are off: start `memcompress web --allow-actions`", 404, headers=HEADERS)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
            return Response("refused: the token is missing or wrong", 403, headers=HEADERS)
        name = request.path_params["name"]
        user_id = form.get("user_id", "")
        if name not in ACTIONS or (name in ("retry", "delete") and not user_id):
            return Response("no such action, or no user_id", 400, headers=HEADERS)
        done = await ACTIONS[name](request.app.state.services, user_id)
        back = "/dead" if name in ("retry", "delete") else "/"
        return RedirectResponse(f"{back}?done={quote(done)}", status_code=303)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/dead", dead),
            Route("/user", find_user),
            Route("/users/{user_id:path}", user),
            Route("/actions/{name}", act, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
