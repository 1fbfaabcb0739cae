"""Azure Functions entry point: triggers only. Each parses its input, calls one thing in shared/,
and answers. Settings are validated on import so a misconfigured app fails at start-up."""

from __future__ import annotations

import json

import azure.functions as func

from shared.settings import get_settings

get_settings()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"status": "ok"}), status_code=200, mimetype="application/json")
