"""The self-service web page (issue 11): static files served by the function app itself at
`GET /api/ui/` (shared/api/routes.py), no server-side rendering, no build step, nothing from a CDN.

The page (static/) is plain HTML, CSS and one JavaScript module that calls the API same-origin with
the browser's Easy Auth session (in Azure App Service Authentication; locally devhost's stand-in,
devhost/easyauth.py). Every file is answered with a Content-Security-Policy that allows only this
origin and no inline script or style, so an injected string can never run as code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import azure.functions as func

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"
# Only flat names of the shipped files are served: no directories, so no path can climb out.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|js|css|svg|png)$")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: a deployment changes the files under the same names.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


@cache
def asset(name: str) -> Asset | None:
    """The shipped file `name` (flat, known type), or None."""
    if not _NAME.match(name):
        return None
    path = STATIC_DIR / name
    if not path.is_file():
        return None
    return Asset(path.read_bytes(), _TYPES[name.rsplit(".", 1)[1]])


def serve(request: func.HttpRequest, services: object = None) -> func.HttpResponse:
    """GET /api/ui/ and /api/ui/{file}: a file of the page with the security headers; 404 otherwise.
    Reads no setting, storage or identity: the page signs in through Easy Auth, then calls the API."""
    name = str(request.route_params.get("file") or INDEX)
    found = asset(name)
    if found is None:
        return func.HttpResponse(
            b"not found",
            status_code=404,
            headers={**SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8"},
        )
    return func.HttpResponse(
        found.body, status_code=200, headers={**SECURITY_HEADERS, "Content-Type": found.content_type}
    )
