"""What Azure Resource Manager operations the app really performs, recorded during the test run.

A pytest plugin (loaded from tests/conftest.py): before any emulator starts it points
`PORTCULLIS_EMULATOR_CALL_LOG` at a file, and every emulator process the suite starts (they inherit
the environment) appends one JSON line per ARM request to it: method, path, api-version and
User-Agent. Requests whose User-Agent carries `portcullis/` come from the app's own clients
(shared/azure_clients.py); the rest are test setup. `tests/infra/test_role_coverage.py`, which this
plugin moves to the end of the run, maps each app request to the RBAC action ARM checks for it and
fails if infra/'s custom role lacks one: the role cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CALL_LOG_ENV = "PORTCULLIS_EMULATOR_CALL_LOG"  # emulator/engine.py reads the same name
APP_USER_AGENT_MARK = "portcullis/"  # shared/azure_clients.py USER_AGENT
COVERAGE_MARKER = "arm_role_coverage"

_METHOD_VERB = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
# Firewall Policy operations are polled at .../nfvOperations; Microsoft documents no action of that
# name, so they are taken to need the same actions as Network's other operation URLs.
_OPERATION_ALIASES = {"nfvoperations": "operations", "nfvoperationresults": "operationResults"}
# Listing JIT policies across a subscription or resource group (no `locations/{loc}` in the path) is
# authorized with the one read action Microsoft documents for JIT policies.
_ACTION_ALIASES = {
    "microsoft.security/jitnetworkaccesspolicies/read": (
        "Microsoft.Security/locations/jitNetworkAccessPolicies/read"
    ),
}


@dataclass(frozen=True)
class ArmCall:
    method: str
    path: str
    api_version: str
    user_agent: str

    @property
    def by_app(self) -> bool:
        return APP_USER_AGENT_MARK in self.user_agent


def arm_action(method: str, path: str) -> str:
    """The RBAC action ARM authorizes a request with: `Microsoft.Network/networkSecurityGroups/write`
    for `PUT .../networkSecurityGroups/nsg1`, `.../initiate/action` for a POST to an action, the last
    `/providers/` segment winning for extension resources (role assignments at a VM's scope)."""
    method = method.upper()
    segments = [s for s in path.split("?", 1)[0].strip("/").split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        namespace, rest = segments[at + 1], segments[at + 2 :]
        if not rest:
            return "Microsoft.Resources/subscriptions/providers/read"
    else:
        namespace, rest = "Microsoft.Resources", segments  # subscriptions/{id}/resourceGroups/{rg}/...
    if method == "POST":
        if len(rest) % 2 == 1 and len(rest) > 1:  # type/name pairs, then the action's name
            types = [*rest[:-1:2], rest[-1]]
            return "/".join([namespace, *types]) + "/action"
        if len(rest) % 2 == 0:  # POST to a resource itself
            return "/".join([namespace, *rest[::2]]) + "/action"
    verb = _METHOD_VERB.get(method)
    if verb is None:
        raise ValueError(f"no RBAC verb for HTTP method {method}")
    types = rest[::2]  # an odd count ends with a collection name (a list), even with a resource name
    types = [_OPERATION_ALIASES.get(t.lower(), t) for t in types]
    action = "/".join([namespace, *types, verb])
    return _ACTION_ALIASES.get(action.lower(), action)


def action_allowed(action: str, granted: list[str]) -> bool:
    """Whether `action` matches one of the role's actions (case-insensitive, `*` wildcards)."""
    for pattern in granted:
        regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
        if re.match(regex, action, flags=re.IGNORECASE):
            return True
    return False


def read_calls(log_path: Path) -> list[ArmCall]:
    if not log_path.is_file():
        return []
    calls = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        calls.append(
            ArmCall(
                method=entry["method"],
                path=entry["path"],
                api_version=entry.get("api_version", ""),
                user_agent=entry.get("user_agent", ""),
            )
        )
    return calls


_state: dict[str, Path] = {}
_collected: dict[str, int] = {}


def emulator_tests_collected() -> int:
    """How many collected tests use the `arm_emulator` fixture (their ARM calls must be logged)."""
    return _collected.get("emulator_tests", 0)


def call_log_path() -> Path | None:
    """The file this run's emulators append to (None when the plugin is not active)."""
    return _state.get("log")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{COVERAGE_MARKER}: checks the ARM calls the whole run recorded; runs after every other test",
    )
    if CALL_LOG_ENV in os.environ:  # an outer run (or a developer) chose the file
        _state["log"] = Path(os.environ[CALL_LOG_ENV])
        return
    directory = Path(tempfile.mkdtemp(prefix="portcullis-arm-calls-"))
    _state["log"] = directory / "arm-calls.jsonl"
    _state["dir"] = directory
    os.environ[CALL_LOG_ENV] = str(_state["log"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the coverage check after everything else, so it sees every call the run made."""
    last = [item for item in items if item.get_closest_marker(COVERAGE_MARKER)]
    _collected["emulator_tests"] = sum(
        1 for item in items if "arm_emulator" in getattr(item, "fixturenames", ())
    )
    if last:
        items[:] = [item for item in items if item not in last] + last


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = _state.pop("dir", None)
    log = _state.pop("log", None)
    if directory is None or log is None:
        return
    # Keep the last run's calls where a developer can look (the temp dir goes away).
    cache = Path(str(config.rootpath)) / ".pytest_cache"
    if log.is_file() and cache.is_dir():
        (cache / "arm-calls.jsonl").write_bytes(log.read_bytes())
    shutil.rmtree(directory, ignore_errors=True)
    os.environ.pop(CALL_LOG_ENV, None)
