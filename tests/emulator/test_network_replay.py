"""Replay of real sessions against live Azure (../shared/azure-recordings): each recorded request is
sent to the emulator in order, and the status code and the shape of the answer (keys and JSON types,
not volatile values) must match what live Azure answered. Operation URLs are opaque: a recorded poll
is sent to the URL the emulator handed out at the same step."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED_DIR, shared_dir_or_skip

RECORDINGS = SHARED_DIR / "azure-recordings"
_NAMES = re.compile(r"nsg|firewall|security_groups")
_RG = re.compile(r"/resourcegroups/([^/?]+)", re.IGNORECASE)
_OPERATION = re.compile(
    r"/locations/[^/]+/(operations|nfvOperations|operationResults|nfvOperationResults)/", re.IGNORECASE
)
# Resource types these sessions also touch that the emulator does not have (virtual WAN, ASGs, the
# pre-2020 `ruleGroups` of firewall policies): those steps are not replayed.
_NOT_EMULATED_TYPES = re.compile(
    r"/(virtualWans|virtualHubs|applicationSecurityGroups|ruleGroups)(/|$)", re.IGNORECASE
)

# Keys live Azure answers that the emulator leaves out, each with its reason.
NOT_EMULATED_KEYS = {
    "systemData": "who changed what: not tracked",
    "applicationSecurityGroups": "application security groups are not emulated",
    "sourceApplicationSecurityGroups": "application security groups are not emulated",
    "destinationApplicationSecurityGroups": "application security groups are not emulated",
    "virtualHub": "virtual WAN is not emulated",
    "hubIPAddresses": "virtual WAN is not emulated",
    "managedBy": "resource group field set by other services",
}


def _recordings() -> list[Path]:
    if not RECORDINGS.is_dir():
        return []
    return sorted(p for p in RECORDINGS.rglob("*.yaml") if _NAMES.search(p.name))


def _shape_differences(recorded: Any, ours: Any, where: str = "") -> list[str]:
    """Keys and JSON types of the live answer that ours lacks or types differently."""
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [f"{where or '<root>'}: expected object, got {type(ours).__name__}"]
        found = []
        for key, value in recorded.items():
            if key in NOT_EMULATED_KEYS:
                continue
            if key == "tags":  # tag names are data, not shape
                if key not in ours:
                    found.append(f"{where}.{key}: missing")
                continue
            if key not in ours:
                found.append(f"{where}.{key}: missing")
            else:
                found.extend(_shape_differences(value, ours[key], f"{where}.{key}"))
        return found
    if isinstance(recorded, list):
        if not isinstance(ours, list):
            return [f"{where}: expected array, got {type(ours).__name__}"]
        if recorded and ours:
            return _shape_differences(recorded[0], ours[0], f"{where}[0]")
        return []
    if recorded is None or ours is None:
        return []
    if type(recorded) is not type(ours) and not (
        isinstance(recorded, int | float) and isinstance(ours, int | float)
    ):
        return [f"{where}: expected {type(recorded).__name__}, got {type(ours).__name__}"]
    return []


def _send(arm, method: str, url: str, body: bytes | None, headers: dict[str, str]):
    context = ssl.create_default_context(cafile=str(arm.ca_file))
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _json(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


@pytest.mark.parametrize("recording", _recordings(), ids=lambda p: p.name)
def test_recorded_session_replays_with_the_same_statuses_and_shapes(arm_emulator, recording):
    shared_dir_or_skip()
    interactions = yaml.safe_load(recording.read_text(encoding="utf-8"))["interactions"]
    renamed: dict[str, str] = {}
    for interaction in interactions:
        for name in _RG.findall(interaction["request"]["uri"]):
            renamed.setdefault(name.lower(), f"replay-{uuid.uuid4().hex[:8]}")
    for new in renamed.values():
        arm_emulator.admin_ok(
            "PUT",
            f"/_emulator/resources/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{new}",
            {"location": "westus"},
        )

    def rename(text: str) -> str:
        return _RG.sub(lambda m: f"/resourceGroups/{renamed[m.group(1).lower()]}", text)

    operation_urls: dict[str, str] = {}  # recorded operation URL (no query) -> the emulator's
    skipped_operations: set[str] = set()
    replayed, problems = 0, []
    for step, interaction in enumerate(interactions):
        request, response = interaction["request"], interaction["response"]
        method, recorded_url = request["method"], request["uri"]
        recorded_key = recorded_url.split("?")[0].lower()
        if _NOT_EMULATED_TYPES.search(recorded_url) or recorded_key in skipped_operations:
            for header in ("Azure-AsyncOperation", "Location", "azure-asyncoperation", "location"):
                for value in (response.get("headers") or {}).get(header, []):
                    skipped_operations.add(value.split("?")[0].lower())
            continue
        if _OPERATION.search(recorded_url):
            url = operation_urls.get(recorded_key)
            if url is None:
                problems.append(f"step {step}: {method} {recorded_url[:90]}: no operation handed out for it")
                continue
        else:
            url = arm_emulator.base_url + rename(recorded_url.removeprefix("https://management.azure.com"))
        body = request.get("body")
        data = (
            rename(body).encode()
            if isinstance(body, str) and body
            else (body if isinstance(body, bytes) else None)
        )
        headers = {"Authorization": "Bearer replay", "Content-Type": "application/json"}
        status, our_headers, raw = _send(arm_emulator, method, url, data, headers)
        replayed += 1
        recorded_headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        ours_lower = {k.lower(): v for k, v in our_headers.items()}
        for header in ("azure-asyncoperation", "location"):
            for value in recorded_headers.get(header, []):
                if header in ours_lower:
                    operation_urls[value.split("?")[0].lower()] = ours_lower[header]
                elif _OPERATION.search(value) and method != "GET":
                    problems.append(f"step {step}: {method} {recorded_url[:90]}: no {header} header")
        expected_status = response["status"]["code"]
        if status != expected_status:
            problems.append(
                f"step {step}: {method} {recorded_url[:90]}: "
                f"status {status}, live {expected_status}: {raw[:200]!r}"
            )
            continue
        recorded_body = _json((response.get("body") or {}).get("string"))
        if _OPERATION.search(recorded_url) and isinstance(recorded_body, dict):
            recorded_body = {k: v for k, v in recorded_body.items() if k != "status"} | {"status": "x"}
        ours = _json(raw)
        if re.search(r"/subscriptions/[^/]+/providers/[^/]+/[^/]+$", url.split("?")[0]) and isinstance(
            ours, dict
        ):
            # a subscription-wide list: live Azure listed someone else's estate, compare the envelope only
            recorded_body = {k: v for k, v in (recorded_body or {}).items() if k != "value"}
        differences = _shape_differences(recorded_body, ours)
        problems.extend(f"step {step}: {method} {recorded_url[:90]}: {d}" for d in differences)
    assert replayed > 0
    assert problems == [], "\n".join(problems)
