"""The custom role in infra/ grants every ARM action the app performed during this test run, and
docs/deploy.md explains each action the role grants."""

from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest

from tests import arm_calls
from tests.arm_calls import action_allowed, arm_action
from tests.infra import bicep

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg1"
VM = f"{RG}/providers/Microsoft.Compute/virtualMachines/vm1"


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        (
            "GET",
            f"{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg1",
            "Microsoft.Network/networkSecurityGroups/read",
        ),
        (
            "PUT",
            f"{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg1",
            "Microsoft.Network/networkSecurityGroups/write",
        ),
        (
            "DELETE",
            f"{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg1/securityRules/r1",
            "Microsoft.Network/networkSecurityGroups/securityRules/delete",
        ),
        ("GET", f"{SUB}/providers/Microsoft.Network/azureFirewalls", "Microsoft.Network/azureFirewalls/read"),
        (
            "PATCH",
            f"{RG}/providers/Microsoft.Network/azureFirewalls/fw1",
            "Microsoft.Network/azureFirewalls/write",
        ),
        (
            "PUT",
            f"{RG}/providers/Microsoft.Network/firewallPolicies/p1/ruleCollectionGroups/g1",
            "Microsoft.Network/firewallPolicies/ruleCollectionGroups/write",
        ),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Network/locations/westeurope/operations/abc",
            "Microsoft.Network/locations/operations/read",
        ),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Network/locations/westeurope/nfvOperations/abc",
            "Microsoft.Network/locations/operations/read",
        ),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Network/locations/westeurope/operationResults/abc",
            "Microsoft.Network/locations/operationResults/read",
        ),
        (
            "GET",
            f"{VM}/providers/Microsoft.Authorization/roleAssignments",
            "Microsoft.Authorization/roleAssignments/read",
        ),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/role1",
            "Microsoft.Authorization/roleDefinitions/read",
        ),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Security/jitNetworkAccessPolicies",
            "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
        ),
        (
            "GET",
            f"{RG}/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default",
            "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
        ),
        (
            "POST",
            f"{RG}/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default/initiate",
            "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
        ),
        ("GET", RG, "Microsoft.Resources/subscriptions/resourceGroups/read"),
        ("GET", f"{SUB}/resources", "Microsoft.Resources/subscriptions/resources/read"),
        (
            "GET",
            f"{SUB}/providers/Microsoft.Security/jitNetworkAccessPolicies",
            "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
        ),
    ],
)
def test_requests_map_to_the_action_arm_authorizes(method: str, path: str, action: str) -> None:
    assert arm_action(method, path) == action


def test_wildcards_and_case_match_like_arm() -> None:
    assert action_allowed("microsoft.network/networksecuritygroups/read", ["Microsoft.Network/*/read"])
    assert not action_allowed("Microsoft.Network/networkSecurityGroups/write", ["Microsoft.Network/*/read"])


def test_docs_explain_every_action_of_the_role() -> None:
    docs = (bicep.ROOT / "docs" / "deploy.md").read_text()
    section = docs.split("## What the app may do in Azure", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z./]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(bicep.role_actions())


@pytest.mark.arm_role_coverage
def test_role_covers_every_arm_call_the_app_made() -> None:
    log = arm_calls.call_log_path()
    calls = arm_calls.read_calls(log) if log else []
    if not calls:
        # Tests that start the emulator ran, yet nothing was logged: the logging itself is broken,
        # and a skip here would hide a role that no longer covers the app.
        assert arm_calls.emulator_tests_collected() == 0, (
            f"{arm_calls.emulator_tests_collected()} tests used the emulator but it logged no ARM "
            f"call to {log}: check emulator/engine.py _append_call_log"
        )
        pytest.skip("no emulator ran in this session: run the whole suite to check the role against the app")
    app_calls = [call for call in calls if call.by_app]
    if not app_calls:
        pytest.skip(f"the app made no ARM calls among the {len(calls)} this session recorded")
    granted = bicep.role_actions()
    performed = Counter(arm_action(call.method, call.path) for call in app_calls)
    missing = {
        action: next(f"{c.method} {c.path}" for c in app_calls if arm_action(c.method, c.path) == action)
        for action in performed
        if not action_allowed(action, granted)
    }
    assert not missing, (
        "the app performs ARM actions infra/modules/operator-role.bicep does not grant "
        "(add them, and explain them in docs/deploy.md):\n"
        + "\n".join(f"  {action}  e.g. {example}" for action, example in sorted(missing.items()))
    )
    unused = sorted(a for a in granted if not any(action_allowed(p, [a]) for p in performed))
    if unused:
        warnings.warn(
            f"role actions no test exercised (documented in docs/deploy.md): {unused}", stacklevel=1
        )
