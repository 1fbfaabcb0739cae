"""The README's route table is the route table (shared/api/routes.py), rendered: a route added,
renamed or re-described there shows up here as a failure until the README follows
(`python -m shared.api.routes` prints the table to paste)."""

from __future__ import annotations

from pathlib import Path

from shared.api.routes import ROUTES, readme_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_route_table_is_the_route_table() -> None:
    assert readme_table() in README.read_text(encoding="utf-8")


def test_each_route_names_a_distinct_function_and_operation() -> None:
    assert len({route.function for route in ROUTES}) == len(ROUTES)
    assert len({route.operation_id for route in ROUTES}) == len(ROUTES)
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)
