"""Fidelity of the Microsoft.Security JIT emulation against Microsoft's own material.

1. Every example of the 2020-01-01 spec goes through the real SDK; the raw answers are validated
   against the spec's JSON schema (plus a check that no undeclared field is answered) and compared
   with the example's answer.
2. The recorded live sessions (PowerShell JSON, azure-cli YAML) are replayed: same status codes, same
   response shape.

Both need ../shared (skipped, with the reason, when it is absent).
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml
from azure.mgmt.security import SecurityCenter
from azure.mgmt.security.v2020_01_01.models import (
    JitNetworkAccessPolicy,
    JitNetworkAccessPolicyInitiateRequest,
)
from referencing.jsonschema import DRAFT4

from tests.conftest import shared_dir_or_skip

SPEC_DIR = "azure-rest-specs/specification/security/resource-manager/Microsoft.Security/stable/2020-01-01"
PS_DIR = (
    "azure-recordings/azure-powershell/src/Security/Security.Test/SessionRecords/"
    "Microsoft.Azure.Commands.Security.Test.ScenarioTests.SecurityJitNetworkAccessPolicyTests"
)
CLI_RECORDING = (
    "azure-recordings/azure-cli/src/azure-cli/azure/cli/command_modules/security/tests/latest/recordings/"
    "test_security_jit_policy.yaml"
)
# Fields the live service answers that the 2020-01-01 spec does not declare (seen in the recordings).
LIVE_ONLY_FIELDS = {"appendMode"}


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    """`cls=` hook: the answer as sent on the wire, not the SDK model."""
    response = pipeline_response.http_response
    text = response.text()
    return response.status_code, (json.loads(text) if text else None)


# --- the spec as JSON Schema -------------------------------------------------------------------------


class SpecSchema:
    def __init__(self, spec_file: Path) -> None:
        self.uri = spec_file.resolve().as_uri()
        self.document = json.loads(spec_file.read_text())

        def retrieve(uri: str) -> referencing.Resource[Any]:
            path = Path(urllib.request.url2pathname(uri.removeprefix("file://")))
            contents = json.loads(path.read_text())
            if path == spec_file.resolve():
                contents = self._with_live_status(contents)
            return referencing.Resource.from_contents(contents, default_specification=DRAFT4)

        self.registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]

    @staticmethod
    def _with_live_status(document: dict[str, Any]) -> dict[str, Any]:
        # The live service and the spec's own initiate example answer "Initiating", outside the enum.
        document = copy.deepcopy(document)
        document["definitions"]["JitNetworkAccessRequestPort"]["properties"]["status"]["enum"].append(
            "Initiating"
        )
        return document

    def validate(self, instance: Any, definition: str) -> None:
        schema = {"$ref": f"{self.uri}#/definitions/{definition}"}
        jsonschema.Draft4Validator(schema, registry=self.registry).validate(instance)
        undeclared = sorted(self._undeclared(instance, schema, ""))
        assert not undeclared, f"fields the spec does not declare for {definition}: {undeclared}"

    def _parts(self, schema: dict[str, Any], resolver: Any) -> list[tuple[dict[str, Any], Any]]:
        """The schema and everything it pulls in through $ref and allOf, each with its resolver."""
        out = []
        stack = [(schema, resolver)]
        while stack:
            node, current = stack.pop()
            if "$ref" in node:
                resolved = current.lookup(node["$ref"])
                stack.append((resolved.contents, resolved.resolver))
                continue
            out.append((node, current))
            stack.extend((part, current) for part in node.get("allOf", []))
        return out

    def _undeclared(
        self, instance: Any, schema: dict[str, Any], path: str, resolver: Any = None
    ) -> list[str]:
        resolver = resolver or self.registry.resolver(base_uri=self.uri)
        parts = self._parts(schema, resolver)
        found: list[str] = []
        if isinstance(instance, dict):
            declared = {key: (sub, r) for node, r in parts for key, sub in node.get("properties", {}).items()}
            for key, value in instance.items():
                if key in declared:
                    found += self._undeclared(value, declared[key][0], f"{path}.{key}", declared[key][1])
                elif key not in LIVE_ONLY_FIELDS:
                    found.append(f"{path}.{key}")
        elif isinstance(instance, list):
            items = next(((node["items"], r) for node, r in parts if "items" in node), None)
            if items is not None:
                for index, item in enumerate(instance):
                    found += self._undeclared(item, items[0], f"{path}[{index}]", items[1])
        return found


@pytest.fixture(scope="module")
def shared() -> Path:
    return shared_dir_or_skip()


@pytest.fixture(scope="module")
def spec(shared: Path) -> SpecSchema:
    return SpecSchema(shared / SPEC_DIR / "jitNetworkAccessPolicies.json")


def example(shared: Path, name: str) -> dict[str, Any]:
    return json.loads((shared / SPEC_DIR / "examples" / "JitNetworkAccessPolicies" / name).read_text())


def contains(answer: Any, expected: Any, path: str = "") -> list[str]:
    """Where `answer` lacks or differs from something in `expected` (extra fields are allowed)."""
    if isinstance(expected, dict):
        if not isinstance(answer, dict):
            return [f"{path}: expected an object, got {answer!r}"]
        return [m for k, v in expected.items() for m in contains(answer.get(k, _MISSING), v, f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(answer, list) or len(answer) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {answer!r}"]
        return [
            m
            for i, (a, e) in enumerate(zip(answer, expected, strict=True))
            for m in contains(a, e, f"{path}[{i}]")
        ]
    if answer == expected or _same_instant(answer, expected):
        return []
    return [f"{path}: expected {expected!r}, got {answer!r}"]


def _same_instant(a: Any, b: Any) -> bool:
    """Date-times compare by value: the SDK sends 6 fractional digits where the examples have 7."""
    if not (isinstance(a, str) and isinstance(b, str) and re.match(r"^\d{4}-\d\d-\d\dT", a)):
        return False

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))

    try:
        return parse(a) == parse(b)
    except ValueError:
        return False


_MISSING = object()


def as_of_today(policy: dict[str, Any]) -> dict[str, Any]:
    """An example's answer as the service gives it today: its 2018 requests have ended since, and an
    ended request reads Revoked/Expired."""
    policy = copy.deepcopy(policy)
    for request in policy["properties"].get("requests", []):
        for vm in request["virtualMachines"]:
            for port in vm["ports"]:
                if port["status"] == "Initiated" and _ended(port["endTimeUtc"]):
                    port.update(status="Revoked", statusReason="Expired")
    return policy


def _ended(moment: str) -> bool:
    return datetime.fromisoformat(
        re.sub(r"(\.\d{6})\d+", r"\1", moment).replace("Z", "+00:00")
    ) < datetime.now(UTC)


def relocate(document: Any, old_rg: str, new_rg: str) -> Any:
    """The example moved into a resource group of this test (the emulator is shared by the session)."""
    text = json.dumps(document).replace(f"/resourceGroups/{old_rg}/", f"/resourceGroups/{new_rg}/")
    return json.loads(text)


@pytest.fixture
def example_scope(arm_emulator, shared):
    """The examples' subscription, with a fresh resource group standing in for their `myRg1`."""
    params = example(shared, "CreateJitNetworkAccessPolicy_example.json")["parameters"]
    subscription = params["subscriptionId"]
    group = f"myRg1-{uuid.uuid4().hex[:8]}"
    arm_emulator.admin_ok(
        "PUT",
        f"/_emulator/resources/subscriptions/{subscription}/resourceGroups/{group}",
        {"location": "westeurope"},
    )
    client = arm_emulator.client(SecurityCenter, subscription)
    return client.jit_network_access_policies, group


def test_create_and_get_examples(shared, spec, example_scope):
    policies, group = example_scope
    create = relocate(example(shared, "CreateJitNetworkAccessPolicy_example.json"), "myRg1", group)
    params = create["parameters"]
    status, answer = policies.create_or_update(
        group,
        params["ascLocation"],
        params["jitNetworkAccessPolicyName"],
        JitNetworkAccessPolicy.deserialize(params["body"]),
        cls=raw,
    )
    assert status == 200
    spec.validate(answer, "JitNetworkAccessPolicy")
    assert contains(answer, as_of_today(create["responses"]["200"]["body"])) == []

    get = relocate(example(shared, "GetJitNetworkAccessPolicy_example.json"), "myRg1", group)
    # The Get example's policy carries a justification in its history: store that state first.
    policies.create_or_update(
        group,
        params["ascLocation"],
        params["jitNetworkAccessPolicyName"],
        JitNetworkAccessPolicy.deserialize(get["responses"]["200"]["body"]),
    )
    status, answer = policies.get(group, params["ascLocation"], params["jitNetworkAccessPolicyName"], cls=raw)
    assert status == 200
    spec.validate(answer, "JitNetworkAccessPolicy")
    assert contains(answer, as_of_today(get["responses"]["200"]["body"])) == []


@pytest.mark.parametrize(
    "name",
    [
        "GetJitNetworkAccessPoliciesSubscription_example.json",
        "GetJitNetworkAccessPoliciesResourceGroup_example.json",
        "GetJitNetworkAccessPoliciesResourceGroupLocation_example.json",
    ],
)
def test_list_examples(arm_emulator, shared, spec, example_scope, name):
    policies, group = example_scope
    listing = relocate(example(shared, name), "myRg1", group)
    stored = listing["responses"]["200"]["body"]["value"][0]
    policies.create_or_update(group, "westeurope", "default", JitNetworkAccessPolicy.deserialize(stored))
    if "resourceGroupName" not in listing["parameters"]:
        call = policies.list
        args: tuple[Any, ...] = ()
    elif "ascLocation" in listing["parameters"]:
        call, args = policies.list_by_resource_group_and_region, (group, listing["parameters"]["ascLocation"])
    else:
        call, args = policies.list_by_resource_group, (group,)
    assert [p.id for p in call(*args) if p.id.lower() == stored["id"].lower()] == [stored["id"]]
    # The same listing on the wire, against the list schema:
    status, page = Wire(arm_emulator).send("GET", _list_path(policies._config.subscription_id, *args), None)
    assert status == 200
    spec.validate(page, "JitNetworkAccessPoliciesList")
    wire_item = next(v for v in page["value"] if v["id"].lower() == stored["id"].lower())
    assert contains(wire_item, as_of_today(stored)) == []


def _list_path(subscription: str, *args: str) -> str:
    scope = f"/subscriptions/{subscription}" + (f"/resourceGroups/{args[0]}" if args else "")
    location = f"/locations/{args[1]}" if len(args) > 1 else ""
    return f"{scope}/providers/Microsoft.Security{location}/jitNetworkAccessPolicies?api-version=2020-01-01"


def _in_half_an_hour() -> str:
    """The examples' times are in 2018; a request must end in the future, so only the time moves."""
    return (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def test_initiate_example(shared, spec, example_scope):
    policies, group = example_scope
    create = relocate(example(shared, "CreateJitNetworkAccessPolicy_example.json"), "myRg1", group)
    params = create["parameters"]
    policies.create_or_update(
        group, params["ascLocation"], "default", JitNetworkAccessPolicy.deserialize(params["body"])
    )
    initiate = relocate(example(shared, "InitiateJitNetworkAccessPolicy_example.json"), "myRg1", group)
    body = initiate["parameters"]["body"]
    for vm in body["virtualMachines"]:
        for port in vm["ports"]:
            port["endTimeUtc"] = _in_half_an_hour()
    status, answer = policies.initiate(
        group,
        params["ascLocation"],
        "default",
        JitNetworkAccessPolicyInitiateRequest.deserialize(body),
        cls=raw,
    )
    assert status == 202
    spec.validate(answer, "JitNetworkAccessRequest")
    expected = copy.deepcopy(initiate["responses"]["202"]["body"])
    # The example's answer names another subscription (a copy-paste in Microsoft's example) and times
    # of 2018; everything else must match.
    for vm in expected["virtualMachines"]:
        vm["id"] = body["virtualMachines"][0]["id"]
        for port in vm["ports"]:
            port.pop("endTimeUtc")
    expected.pop("startTimeUtc")
    expected.pop("requestor")
    assert contains(answer, expected) == []
    assert set(answer) == set(initiate["responses"]["202"]["body"])
    history = policies.get(group, params["ascLocation"], "default").requests
    assert history[-1].virtual_machines[0].ports[0].status == "Initiated"


def test_delete_example(shared, example_scope):
    policies, group = example_scope
    delete = example(shared, "DeleteJitNetworkAccessPolicy_example.json")
    create = relocate(example(shared, "CreateJitNetworkAccessPolicy_example.json"), "myRg1", group)
    location, name = delete["parameters"]["ascLocation"], delete["parameters"]["jitNetworkAccessPolicyName"]
    policies.create_or_update(
        group, location, name, JitNetworkAccessPolicy.deserialize(create["parameters"]["body"])
    )
    statuses = [
        policies.delete(group, location, name, cls=lambda r, d, h: r.http_response.status_code) for _ in "12"
    ]
    assert statuses == [200, 204]
    assert set(delete["responses"]) == {"200", "204"}


# --- replay of recorded live sessions ----------------------------------------------------------------


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys of objects, element shapes of lists, type names of leaves."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        shapes = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return shapes
    return type(value).__name__


class Wire:
    """Raw HTTPS to the emulator, as a recorded client sent it."""

    def __init__(self, arm_emulator: Any) -> None:
        self.base = arm_emulator.base_url
        self.context = ssl.create_default_context(cafile=str(arm_emulator.ca_file))

    def send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": "Bearer recorded", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, json.loads(text) if text else None


def _shift_end_times(body: Any) -> Any:
    text = json.dumps(body)
    return json.loads(re.sub(r'"endTimeUtc": "[^"]+"', f'"endTimeUtc": "{_in_half_an_hour()}"', text))


@pytest.mark.parametrize(
    "session", ["GetResourceGroupLevelResource.json", "StartResourceGroupLevelResource.json"]
)
def test_replay_powershell_sessions(arm_emulator, shared, session):
    entries = json.loads((shared / PS_DIR / session).read_text())["Entries"]
    jit_entries = [e for e in entries if "jitNetworkAccessPolicies" in e["RequestUri"]]
    assert jit_entries, "the recording has no JIT calls"
    wire = Wire(arm_emulator)
    group = f"myService1-{uuid.uuid4().hex[:8]}"
    subscription = re.search(r"/subscriptions/([^/]+)/", jit_entries[0]["RequestUri"]).group(1)
    arm_emulator.admin_ok(
        "PUT",
        f"/_emulator/resources/subscriptions/{subscription}/resourceGroups/{group}",
        {"location": "centralus"},
    )
    for entry in jit_entries:
        uri = entry["RequestUri"].replace("/resourceGroups/myService1/", f"/resourceGroups/{group}/")
        request_body = json.loads(entry["RequestBody"]) if entry["RequestBody"] else None
        if request_body is not None:
            request_body = _shift_end_times(relocate(request_body, "myService1", group))
        status, answer = wire.send(entry["RequestMethod"], uri, request_body)
        recorded = json.loads(entry["ResponseBody"]) if entry["ResponseBody"] else None
        assert status == entry["StatusCode"], (entry["RequestMethod"], uri, answer)
        assert shape(answer) == shape(recorded), (entry["RequestMethod"], uri)
        if entry["RequestMethod"] == "POST":
            recorded_port = recorded["virtualMachines"][0]["ports"][0]
            answered_port = answer["virtualMachines"][0]["ports"][0]
            assert (answered_port["status"], answered_port["statusReason"]) == (
                recorded_port["status"],
                recorded_port["statusReason"],
            )


def test_replay_cli_subscription_listing(arm_emulator, shared):
    """The CLI's `security jit-policy list` against a subscription holding the recorded policies."""
    interactions = yaml.safe_load((shared / CLI_RECORDING).read_text())["interactions"]
    assert len(interactions) == 1
    recorded = json.loads(interactions[0]["response"]["body"]["string"])
    path = re.sub(r"^https://[^/]+", "", interactions[0]["request"]["uri"])
    subscription = re.search(r"/subscriptions/([^/]+)/", path).group(1)
    wire = Wire(arm_emulator)
    for policy in recorded["value"]:
        group = policy["id"].split("/resourceGroups/")[1].split("/")[0]
        arm_emulator.admin_ok(
            "PUT",
            f"/_emulator/resources/subscriptions/{subscription}/resourceGroups/{group}",
            {"location": "eastus"},
        )
        status, _ = wire.send(
            "PUT",
            policy["id"] + "?api-version=2020-01-01",
            {"kind": policy["kind"], "properties": policy["properties"]},
        )
        assert status == 200
    status, answer = wire.send(interactions[0]["request"]["method"], path, None)
    assert status == interactions[0]["response"]["status"]["code"]
    assert shape(answer) == shape(recorded)
    by_id = {p["id"].lower(): p for p in answer["value"]}
    for policy in recorded["value"]:
        mine = by_id[policy["id"].lower()]
        assert mine["properties"]["virtualMachines"] == policy["properties"]["virtualMachines"]
        assert mine["properties"]["requests"] == policy["properties"]["requests"]
        assert {k: mine[k] for k in ("name", "type", "location", "kind")} == {
            k: policy[k] for k in ("name", "type", "location", "kind")
        }
