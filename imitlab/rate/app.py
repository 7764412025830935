"""The rating web app (Starlette): one prompt, two anonymised answers in a per-rater random order, A / B / tie.

No JavaScript: plain forms, and a Content-Security-Policy that forbids scripts outright, so even a
template mistake could not run model text. All model text goes through Jinja2 with autoescape on.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from imitlab.errors import ImitlabError
from imitlab.rate.db import RatingStore

log = logging.getLogger(__name__)

COOKIE = "imitlab_rater"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(_HEADERS)
        return response


def create_app(db_path: str | Path, *, secure_cookie: bool = False) -> Starlette:
    store = RatingStore(db_path)
    env = Environment(
        loader=PackageLoader("imitlab.rate", "templates"),
        autoescape=select_autoescape(["html"], default=True),  # model text is untrusted
    )
    templates = Jinja2Templates(env=env)

    def rater_of(request: Request) -> str | None:
        return store.rater_for_token(request.cookies.get(COOKIE))

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=status)

    def signed_in(token: str) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, max_age=30 * 86400)
        return response

    def index(request: Request) -> Response:
        rater = rater_of(request)
        if rater is None:
            return login_page(request, status=401)
        done, total = store.progress(rater)
        pair = store.next_pair(rater)
        context = {"rater": rater, "done": done, "total": total}
        if pair is None:
            return templates.TemplateResponse(request, "done.html", context)
        return templates.TemplateResponse(
            request, "rate.html", {**context, "pair": pair, "csrf": store.csrf_token(rater)}
        )

    async def login(request: Request) -> Response:
        if request.method == "GET":  # a link with ?token= handed to a rater
            token = request.query_params.get("token", "")
        else:
            token = str((await request.form()).get("token", ""))
        if store.rater_for_token(token) is None:
            return login_page(request, "Unknown token.", status=401)
        return signed_in(token)

    async def rate(request: Request) -> Response:
        rater = rater_of(request)
        if rater is None:
            return login_page(request, status=401)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), store.csrf_token(rater)):
            return PlainTextResponse("bad form token", status_code=403)
        try:
            pair_id = int(str(form.get("pair_id", "")))
            store.submit(rater, pair_id, str(form.get("choice", "")))
        except (ValueError, ImitlabError) as exc:
            return PlainTextResponse(f"bad submission: {exc}", status_code=400)
        return RedirectResponse("/", status_code=303)

    def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", index),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/rate", rate, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)])
    app.state.store = store
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until Ctrl-C. Loopback by default; another host is allowed but logged as exposed."""
    import uvicorn

    if not Path(db_path).is_file():
        raise ImitlabError(f"rating database not found: {db_path} (create it with `imitlab rate init`)")
    if not is_loopback(host):
        log.warning("binding to %s: the rating app is reachable from other machines (raters still need tokens)", host)
    # access_log off: a rater's first link carries their token in the query string.
    uvicorn.run(create_app(db_path), host=host, port=port, access_log=False, log_level="warning")


__all__ = ["create_app", "is_loopback", "serve"]
