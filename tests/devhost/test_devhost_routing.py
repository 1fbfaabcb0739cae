"""Route templates and route selection, as the Functions host (ASP.NET routing) does them."""

from __future__ import annotations

import pytest

from devhost.functions import ALL_METHODS, HttpFunction
from devhost.http_server import RouteTable
from devhost.routing import RouteTemplateError, parse_template, split_path

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it


def match(template: str, path: str) -> dict[str, str] | None:
    return parse_template(template).match(split_path(path))


def test_literal_segments_match_case_insensitively() -> None:
    assert match("health", "/HEALTH") == {}
    assert match("health", "/healthz") is None
    assert match("a/b", "/a") is None
    assert match("a", "/a/b") is None


def test_parameters_capture_decoded_segments() -> None:
    template = "subscriptions/{sub}/resourceGroups/{rg}/policies/{name}/initiate"
    assert match(template, "/subscriptions/s1/resourcegroups/my%20rg/policies/default/initiate") == {
        "sub": "s1",
        "rg": "my rg",
        "name": "default",
    }
    assert match(template, "/subscriptions/s1/resourceGroups/rg/policies/default") is None


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("items/{id:int}", "/items/42", "/items/4x2"),
        ("items/{id:int}", "/items/-7", "/items/99999999999"),
        ("items/{id:long}", "/items/99999999999", "/items/1.5"),
        ("items/{id:guid}", "/items/0f8fad5b-d9cb-469f-a165-70867728950e", "/items/nope"),
        ("items/{id:alpha}", "/items/abc", "/items/ab1"),
        ("items/{id:bool}", "/items/True", "/items/yes"),
        ("items/{id:minlength(3)}", "/items/abc", "/items/ab"),
        ("items/{id:length(2,3)}", "/items/ab", "/items/abcd"),
        ("items/{id:range(1,10)}", "/items/10", "/items/11"),
        ("items/{id:int:min(5)}", "/items/5", "/items/4"),
        ("items/{id:regex(^[a-z]{{2}}\\d$)}", "/items/ab1", "/items/abc1"),
    ],
)
def test_constraints(template: str, good: str, bad: str) -> None:
    assert match(template, good) is not None
    assert match(template, bad) is None


def test_optional_default_and_catch_all() -> None:
    assert match("items/{id?}", "/items") == {}
    assert match("items/{id:int?}", "/items/3") == {"id": "3"}
    assert match("items/{page=1}", "/items") == {"page": "1"}
    assert match("files/{*path}", "/files/a/b/c") == {"path": "a/b/c"}
    assert match("files/{*path}", "/files") == {}
    assert match("files/{**path}", "/files/x") == {"path": "x"}


def test_complex_segment() -> None:
    assert match("files/{name}.{ext}", "/files/report.tar.gz") == {"name": "report", "ext": "tar.gz"}
    assert match("files/{name}.{ext}", "/files/noext") is None


@pytest.mark.parametrize(
    "template",
    ["items/{id", "items/{id:nosuch}", "{*rest}/tail", "a/{x}/{x}", "{a?}/b", "a/{x}{y}", "a//b"],
)
def test_bad_templates_are_refused_with_the_template_named(template: str) -> None:
    with pytest.raises(RouteTemplateError, match="route"):
        parse_template(template)


def _http(name: str, route: str, methods: set[str] | None = None) -> HttpFunction:
    return HttpFunction(
        name=name,
        user_function=lambda req: None,
        trigger={"type": "httpTrigger", "name": "req"},
        bindings=[],
        directory=".",
        route=parse_template(route),
        methods=frozenset(methods) if methods else ALL_METHODS,
    )


def test_most_specific_route_wins_and_methods_select() -> None:
    table = RouteTable(
        [
            _http("catch_all", "policies/{*rest}", {"GET"}),
            _http("by_name", "policies/{name}", {"GET", "PUT"}),
            _http("by_number", "policies/{id:int}", {"DELETE"}),
            _http("literal", "policies/default", {"GET"}),
        ],
        "api",
    )

    def chosen(method: str, path: str) -> tuple[str | None, dict[str, str], set[str]]:
        function, values, allowed = table.resolve(method, path)
        return (function.name if function else None), values, allowed

    assert chosen("GET", "/api/policies/default")[0] == "literal"
    assert chosen("GET", "/api/policies/7") == ("by_name", {"name": "7"}, set())
    assert chosen("DELETE", "/api/policies/7")[0] == "by_number"
    assert chosen("GET", "/api/policies/a/b")[0] == "catch_all"
    assert chosen("PATCH", "/api/policies/x") == (None, {}, {"GET", "PUT"})
    assert chosen("GET", "/policies/x") == (None, {}, set())
    assert chosen("GET", "/api/other") == (None, {}, set())


def test_empty_route_prefix() -> None:
    table = RouteTable([_http("h", "health")], "")
    assert table.resolve("GET", "/health")[0] is not None
