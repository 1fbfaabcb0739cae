"""The event catalogue is the only source of event names: every `log_event` and `record` call in the
app names an `EventId` member, no catalogue value is spelled as a literal elsewhere, and every event
an alert in `infra/` matches on is in the catalogue (renaming one would silence the page)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shared.events import EventId

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "shared").rglob("*.py")), ROOT / "function_app.py"]
VALUES = {member.value for member in EventId}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def _calls() -> list[tuple[str, ast.Call]]:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in {"log_event", "record"}:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return found


def test_every_event_name_is_a_dotted_lower_case_identifier() -> None:
    assert [value for value in VALUES if not EVENT_NAME.match(value)] == []


def test_every_call_site_names_a_catalogue_member() -> None:
    literals, unknown = [], []
    for where, call in _calls():
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            literals.append(f"{where}: {first.value!r}")
        elif (
            isinstance(first, ast.Attribute)
            and ast.unparse(first.value) == "EventId"
            and first.attr not in EventId.__members__
        ):
            unknown.append(f"{where}: EventId.{first.attr}")
    assert literals == [], "use shared.events.EventId, not a string"
    assert unknown == []
    assert len(_calls()) > 40  # the scan still finds the call sites


def test_no_catalogue_value_is_spelled_outside_the_catalogue() -> None:
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for path in SOURCES
        if path.name != "events.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in VALUES
    ]
    assert spelled == []


def test_every_event_an_alert_in_infra_matches_is_in_the_catalogue() -> None:
    named = {
        match.group(2)
        for path in sorted((ROOT / "infra").rglob("*.bicep"))
        for match in re.finditer(r"var (\w+Event) = '([^']*)'", path.read_text(encoding="utf-8"))
    }
    assert EventId.REVOKE_FAILING.value in named
    assert named - VALUES == set()
