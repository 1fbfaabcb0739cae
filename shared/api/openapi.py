"""The OpenAPI 3.1 document for the whole API, served at /api/openapi.json.

Paths come from the route table (shared/api/routes.py) and every body's schema from the pydantic
model that validates it (requests) or serialises it (answers, shared/answers.py), so the document
cannot drift from the code. What only this module knows: the document's info, the security schemes,
the ARM error body every route may answer, and the queue message documented beside the API.
tests/integration/test_api_openapi.py checks every Function of function_app.py appears here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.functions as func
from pydantic import BaseModel

from shared.answers import Error
from shared.api.http import ApiCall, endpoint, json_response
from shared.defender import API_VERSION
from shared.queue_intake import QueuedEnvelope

if TYPE_CHECKING:
    from shared.api.routes import Route

_ERROR = {"$ref": "#/components/schemas/Error"}


def _param(name: str, where: str = "path", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string"},
        "description": description,
    }


def _api_version() -> dict[str, Any]:
    return {
        "name": "api-version",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": [API_VERSION]},
    }


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for code, text in [
            (400, "invalid input; `error.target` names the field"),
            (401, "not authenticated"),
            (403, "Azure RBAC does not allow it"),
            (404, "not found"),
            (413, "body too large"),
            (503, "RBAC or storage unavailable; nothing was changed"),
        ]
    }
    return {**ok, **errors}


def _params(path: str) -> list[dict[str, Any]]:
    return [_param(part[1:-1]) for part in path.split("/") if part.startswith("{")]


def _schema(model: type[BaseModel], name: str | None, schemas: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to the model's component, adding it (and the models it nests) to `schemas`."""
    component = name or model.__name__
    if component not in schemas:
        schemas[component] = model.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
    return {"$ref": f"#/components/schemas/{component}"}


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {}
    for reply in route.replies:
        answer: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            answer["content"] = {"application/json": {"schema": _schema(reply.model, None, schemas)}}
        if reply.headers:
            answer["headers"] = {
                header: {"schema": {"type": "string"}, "description": text}
                for header, text in reply.headers.items()
            }
        ok[str(reply.status)] = answer
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "tags": [route.tag],
        "summary": route.summary,
        "parameters": [
            *_params("/" + route.path),
            *([_api_version()] if route.defender else []),
            *(
                {
                    "name": query.name,
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": query.kind,
                        **({"default": query.default} if query.default is not None else {}),
                    },
                    **({"description": query.description} if query.description else {}),
                }
                for query in route.query
            ),
        ],
        "responses": ok if route.public else _responses(ok),
    }
    if route.description:
        operation["description"] = route.description
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(route.body, route.body_name, schemas)}},
        }
    if route.public:
        operation["security"] = []
    return operation


def document() -> dict[str, Any]:
    from shared.api.routes import ROUTES  # the table names this module's handler

    schemas: dict[str, Any] = {
        # Not an HTTP body: the queue channel's message, documented beside the API.
        "QueuedAccessRequest": {
            "description": "A message on the jit-requests queue (base64 text): the initiate body "
            "(virtualMachines, justification) plus these fields.",
            **QueuedEnvelope.model_json_schema(ref_template="#/components/schemas/{model}"),
        },
    }
    paths: dict[str, Any] = {}
    _schema(Error, None, schemas)
    for route in ROUTES:
        paths.setdefault("/" + route.path, {})[route.method.lower()] = _operation(route, schemas)
    for model_schema in list(schemas.values()):
        schemas.update(model_schema.pop("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis",
            "version": "1.0.0",
            "description": "Just-in-time VM access: Defender-compatible JIT API (api-version "
            f"{API_VERSION}) and Portcullis' records.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"easyAuth": []}, {"bearer": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Entra ID token, validated by the app when Easy Auth is off",
                },
                "easyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-MS-CLIENT-PRINCIPAL",
                    "description": "set by App Service Authentication (Easy Auth); trusted only "
                    "when WEBSITE_AUTH_ENABLED is true",
                },
            },
        },
        "paths": paths,
    }


@endpoint(authenticate=False)
def get_openapi(call: ApiCall) -> func.HttpResponse:
    return json_response(200, document())
