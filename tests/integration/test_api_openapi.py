"""/api/openapi.json says what the code does: every HTTP function of function_app.py (route and
methods, read from the Functions app object itself) is in the document with exactly those methods,
nothing else is, and the document is valid OpenAPI 3.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from shared.api.openapi import document

ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# Run in a child process: importing function_app validates settings and configures logging once per
# process, which must not leak into the other tests. Storage is never contacted at import.
_LIST_ROUTES = """
import json, function_app
routes = []
for function in function_app.app.get_functions():
    for binding in function.get_bindings():
        spec = binding.get_dict_repr()
        if spec.get("type") == "httpTrigger":
            methods = [str(getattr(m, "value", m)).lower() for m in spec.get("methods") or []]
            name = function.get_function_name()
            routes.append({"function": name, "route": spec["route"], "methods": methods})
print(json.dumps(routes))
"""


@pytest.fixture(scope="module")
def app_routes() -> dict[str, set[str]]:
    answer = subprocess.run(
        [sys.executable, "-c", _LIST_ROUTES],
        cwd=ROOT,
        env={"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    routes: dict[str, set[str]] = {}
    for entry in json.loads(answer.stdout):
        assert entry["methods"], f"{entry['function']} accepts every method; name them"
        routes.setdefault("/" + entry["route"], set()).update(entry["methods"])
    return routes


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return document()


def documented_routes(spec: dict[str, Any]) -> dict[str, set[str]]:
    return {path: set(item) & HTTP_METHODS for path, item in spec["paths"].items()}


def test_every_http_function_is_documented_with_its_methods(app_routes, spec) -> None:
    documented = documented_routes(spec)
    missing = {route: methods for route, methods in app_routes.items() if route not in documented}
    assert not missing, f"routes of function_app.py not in /api/openapi.json: {missing}"
    wrong = {
        route: {"code": sorted(methods), "document": sorted(documented[route])}
        for route, methods in app_routes.items()
        if documented[route] != methods
    }
    assert not wrong, f"methods differ between function_app.py and the document: {wrong}"


def test_the_document_has_no_route_the_app_does_not_serve(app_routes, spec) -> None:
    extra = sorted(set(documented_routes(spec)) - set(app_routes))
    assert not extra, f"documented but not served by function_app.py: {extra}"


def test_the_app_serves_the_api_under_the_documented_server_prefix(spec) -> None:
    # host.json's routePrefix decides where routes live; the document's server must agree.
    prefix = (
        json.loads((ROOT / "host.json").read_text())
        .get("extensions", {})
        .get("http", {})
        .get("routePrefix", "api")
    )
    assert spec["servers"] == [{"url": f"/{prefix}"}]


def test_the_document_is_valid_openapi(spec) -> None:
    validate(spec)  # raises OpenAPIValidationError naming the offending path


def test_path_parameters_are_declared_for_every_operation(spec) -> None:
    for path, item in spec["paths"].items():
        template = set(re.findall(r"{([^}]+)}", path))
        for method in set(item) & HTTP_METHODS:
            declared = {
                p["name"]
                for p in [*item.get("parameters", []), *item[method].get("parameters", [])]
                if p["in"] == "path"
            }
            assert declared == template, (path, method, declared)


def test_operation_ids_are_unique(spec) -> None:
    ids = [item[m]["operationId"] for item in spec["paths"].values() for m in set(item) & HTTP_METHODS]
    assert len(ids) == len(set(ids))
