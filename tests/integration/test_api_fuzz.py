"""Schemathesis against the app on the local host (devhost + Azurite + the ARM emulator), driven by
/api/openapi.json as served: for any generated input (valid per the document, and deliberately
invalid), no answer is a 5xx, every status is documented, and every body conforms to the document.

The caller, the dev user `admin`, holds Owner on the subscription (a bearer token from the local
issuer: the stack runs in JWT mode), so generated requests reach the handlers' validation and storage
instead of stopping at RBAC. Two passes
per operation: everything generated, then with real path values (the estate's subscription, resource
group, region, policy and an existing request) so bodies and queries meet real records.
Bounded: a few examples per operation, fixed seed, no Hypothesis database, whole test well under 60 s.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
from azure.mgmt.authorization import AuthorizationManagementClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from localrig.devusers import ADMIN
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import OWNER_ROLE, assign_role
from localrig.estates.sample import Estate
from localrig.stack import Stack, start_stack

EXAMPLES_PER_OPERATION = 4
SEED = 20260101
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("fuzz-stack")) as running:
        yield running


def _send(stack: Stack, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        stack.api_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, Any]:
    """An estate, an Owner on the subscription, a policy and one request made through the API."""
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    rg = f"rg-{uuid.uuid4().hex[:8]}"
    estate = Estate(arm.subscription_id, rg)
    arm.seed(estate.resources())
    owner = ADMIN.object_id
    sub_scope = f"/subscriptions/{arm.subscription_id}"
    assign_role(arm.client(AuthorizationManagementClient), arm.subscription_id, sub_scope, OWNER_ROLE, owner)
    headers = stack.headers_for(ADMIN)
    vm_id = estate.vm_id(Estate.vm_web)
    policy_path = estate.policy_path()
    _send(
        stack,
        "PUT",
        policy_path + "?api-version=2020-01-01",
        headers,
        {
            "kind": "Basic",
            "properties": {
                "virtualMachines": [
                    {
                        "id": vm_id,
                        "ports": [
                            {
                                "number": 22,
                                "protocol": "TCP",
                                "allowedSourceAddressPrefix": "*",
                                "maxRequestAccessDuration": "PT3H",
                            }
                        ],
                    }
                ]
            },
        },
    )
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    answer = _send(
        stack,
        "POST",
        policy_path + "/initiate?api-version=2020-01-01",
        headers,
        {"virtualMachines": [{"id": vm_id, "ports": [{"number": 22, "endTimeUtc": end}]}]},
    )
    return {
        "headers": headers,
        "path_values": {
            "subscriptionId": arm.subscription_id,
            "resourceGroupName": rg,
            "ascLocation": "westeurope",
            "jitNetworkAccessPolicyName": "default",
            "requestId": answer["requestId"],
        },
        "query_values": {"vm": vm_id, "api-version": "2020-01-01"},
    }


@pytest.mark.timeout(180)
def test_no_generated_input_gets_a_5xx_or_an_undocumented_answer(stack: Stack, world: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"{stack.api_url}/openapi.json", timeout=10) as response:
        served = json.load(response)
    schema = schemathesis.openapi.from_dict(served)
    session = requests.Session()
    failures: list[str] = []
    exercised: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        exercised.append(operation.label)
        declared = {p.name for p in operation.path_parameters}
        fixed = {k: v for k, v in world["path_values"].items() if k in declared}
        queried = {p.name for p in operation.query}
        fixed_query = {k: v for k, v in world["query_values"].items() if k in queried}
        strategies = [
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed, query=fixed_query or None),
        ]
        if operation.body or operation.query or operation.path_parameters:
            strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
            strategies.append(operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed))

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION * len(strategies),
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def call(case: schemathesis.Case) -> None:
            response = case.call(
                base_url=stack.api_url, session=session, headers=world["headers"], timeout=30
            )
            case.validate_response(response, checks=CHECKS, headers=world["headers"])

        try:
            call()
        except Exception as error:  # keep going: report every operation that fails
            failures.append(f"{operation.label}: {type(error).__name__}: {str(error)[:2000]}")
    assert len(exercised) >= 15, exercised
    assert stack.dead_process() is None
    assert not failures, "\n\n".join(failures)
