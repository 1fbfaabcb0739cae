"""What the sample estate's network looks like, without what every write changes (etags, provisioning states):
compare before and after to show a grant left nothing behind. Also the observations the demo and the
end-to-end test both wait on (our Deny baseline, a request's ports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from localrig.emulator_client import EmulatorClient
from localrig.estates.sample import ESTATE_NSGS, Estate
from shared import plan

_VOLATILE = {"etag", "provisioningState", "id", "type"}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if k not in _VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def nsg_rules(arm: EmulatorClient, estate: Estate, nsg: str) -> list[dict[str, Any]]:
    body = arm.resource(estate.nsg_id(nsg))
    rules = body["properties"].get("securityRules") or []
    return sorted((_clean(r) for r in rules), key=lambda r: r["name"])


def classic_nat(arm: EmulatorClient, estate: Estate) -> list[dict[str, Any]]:
    body = arm.resource(estate.classic_firewall_id)
    return sorted(
        (_clean(c) for c in body["properties"].get("natRuleCollections") or []), key=lambda c: c["name"]
    )


def policy_groups(arm: EmulatorClient, estate: Estate) -> list[str]:
    body = arm.resource(estate.firewall_policy_id)
    groups = body["properties"].get("ruleCollectionGroups") or []
    return sorted(str(g["id"]).rsplit("/", 1)[-1] for g in groups)


def network(arm: EmulatorClient, estate: Estate) -> dict[str, Any]:
    return {
        **{nsg: nsg_rules(arm, estate, nsg) for nsg in ESTATE_NSGS},
        "fw-classic": classic_nat(arm, estate),
        "fwpol": policy_groups(arm, estate),
    }


class DemoStepError(RuntimeError):
    """A step of the story (the demo's, or an end-to-end test's) did not do what it should."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; DemoStepError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise DemoStepError(f"timed out after {timeout:.0f} s waiting for {what}")


def our_denies(arm: EmulatorClient, estate: Estate, nsg: str) -> list[dict[str, Any]]:
    return [
        rule
        for rule in nsg_rules(arm, estate, nsg)
        if rule["properties"]["access"] == "Deny"
        and plan.owns_rule(rule["name"], rule["properties"].get("description"))
    ]


def ports_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [port for vm in answer["virtualMachines"] for port in vm["ports"]]
