"""What the network looks like, without what every write changes (etags, provisioning states):
compare before and after to show a grant left nothing behind."""

from __future__ import annotations

from typing import Any

from demo.estate import Estate
from localstack.emulator_client import EmulatorClient

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
        **{
            nsg: nsg_rules(arm, estate, nsg)
            for nsg in ("nsg-web-subnet", "nsg-web-nic", "nsg-app-nic", "nsg-ops-nic")
        },
        "fw-classic": classic_nat(arm, estate),
        "fwpol": policy_groups(arm, estate),
    }
