"""Pure pieces of the ARM engine: resource ids, etags, fault rules, the store and its indexes."""

from __future__ import annotations

import pytest

from emulator import ids
from emulator.engine import etag_value
from emulator.faults import FaultRules, parse_fault
from emulator.store import Store

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it

NSG = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"


def test_resource_ids_parse_with_scope_types_and_parent():
    rid = ids.parse(NSG + "/securityRules/r1/")
    assert rid is not None
    assert (rid.subscription, rid.resource_group, rid.namespace) == ("s1", "rg", "Microsoft.Network")
    assert rid.type_key == "Microsoft.Network/networkSecurityGroups/securityRules"
    assert str(rid.parent) == NSG and rid.name == "r1"
    assert str(rid) == NSG + "/securityRules/r1"


def test_extension_resource_ids_keep_their_scope():
    vm = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    rid = ids.parse(vm + "/providers/Microsoft.Authorization/roleAssignments/a1")
    assert rid is not None and rid.scope == vm and rid.type_key == "Microsoft.Authorization/roleAssignments"


@pytest.mark.parametrize(
    "text",
    [
        "/subscriptions/s1/resourceGroups/rg",
        NSG + "/securityRules",
        "/subscriptions/s1/providers/X",
        "nonsense",
    ],
)
def test_collections_and_garbage_are_not_resource_ids(text):
    assert ids.parse(text) is None


def test_etags_compare_by_their_opaque_part():
    assert etag_value('W/"abc"') == etag_value('"abc"') == etag_value("abc") == "abc"


def test_fault_rules_count_down_and_match_method_and_path():
    rules = FaultRules()
    rules.add(parse_fault({"method": "PUT", "path": "/azureFirewalls/", "status": 409, "count": 2}))
    assert rules.take("GET", "/x/azureFirewalls/fw") is None
    assert rules.take("PUT", "/x/azureFirewalls/fw") is not None
    assert rules.take("put", "/x/AZUREFIREWALLS/fw") is not None
    assert rules.take("PUT", "/x/azureFirewalls/fw") is None
    rules.add(parse_fault({"latency_ms": 5, "count": None}))
    assert all(rules.take("GET", "/any") is not None for _ in range(5))


@pytest.mark.parametrize(
    ("data", "word"),
    [
        ({"status": 302}, "status"),
        ({"status": 500, "count": 0}, "count"),
        ({"status": "500"}, "status"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"drop_connection": "yes"}, "drop_connection"),
        ({}, "at least one"),
    ],
)
def test_bad_fault_rules_name_the_field(data, word):
    with pytest.raises(ValueError, match=word):
        parse_fault(data)


class _Counter:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def update(self, old, new) -> None:
        if old is not None:
            self.ids.discard(old.id)
        if new is not None:
            self.ids.add(new.id)

    def reset(self) -> None:
        self.ids.clear()


def test_store_is_case_insensitive_persists_and_feeds_indexes(tmp_path):
    path = tmp_path / "state.json"
    store = Store(path)
    store.put(NSG, "Microsoft.Network/networkSecurityGroups", {"id": NSG, "name": "nsg"})
    index = _Counter()
    store.add_listener(index)
    assert index.ids == {NSG}
    assert store.get(NSG.upper()) is not None
    assert [
        r.id for r in store.list("microsoft.network/networksecuritygroups", under="/subscriptions/s1")
    ] == [NSG]
    store.put(NSG + "2", "Microsoft.Network/networkSecurityGroups", {"id": NSG + "2"})
    store.delete(NSG)
    assert index.ids == {NSG + "2"}
    store.flush()
    reloaded = Store(path)
    assert reloaded.get(NSG) is None and reloaded.get(NSG + "2") is not None
