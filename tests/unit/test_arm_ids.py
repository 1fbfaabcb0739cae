"""The one reader of ARM ids (shared/arm_ids.py), over azure-mgmt-core's parse_resource_id."""

from __future__ import annotations

import pytest

from shared.arm_ids import ArmId, parent_of, subscription_of
from shared.topology import ArmPath, TopologyError

VNET = "/subscriptions/S1/resourceGroups/Rg/providers/Microsoft.Network/virtualNetworks/spoke"


def test_parts_of_a_child_resource() -> None:
    parsed = ArmId.parse(f"{VNET}/subnets/default/")
    assert parsed == ArmId(
        "S1", "Rg", "Microsoft.Network", ("virtualNetworks", "subnets"), ("spoke", "default")
    )
    assert subscription_of("/subscriptions/S1") == "S1"
    assert ArmPath.parse(f"{VNET}/subnets/default") == ArmPath("S1", "Rg", ("spoke", "default"))


def test_parent_keeps_the_spelling_given() -> None:
    assert parent_of(f"{VNET}/SUBNETS/default", "subnets") == VNET
    with pytest.raises(ValueError, match="not a subnet id"):
        parent_of(VNET, "subnets")


@pytest.mark.parametrize(
    "bad", ["", "vm1", "/resourceGroups/rg", "/providers/Microsoft.Management/managementGroups/m"]
)
def test_an_id_outside_a_subscription_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        subscription_of(bad)


def test_arm_path_needs_a_resource() -> None:
    with pytest.raises(TopologyError):
        ArmPath.parse("/subscriptions/S1/resourceGroups/rg")
