"""Shared pieces of the Network provider: field checks with ARM-style errors, references between
resources, and the back-reference index (who points at this subnet / NSG / public IP / policy)."""

from __future__ import annotations

import copy
import ipaddress
import re
import uuid
from typing import TYPE_CHECKING, Any

from emulator import ids
from emulator.errors import ArmError, bad_request, invalid_resource_reference

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.store import Record, Store

NETWORK = "Microsoft.Network"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
VNET_TYPE = "Microsoft.Network/virtualNetworks"
NIC_TYPE = "Microsoft.Network/networkInterfaces"
PIP_TYPE = "Microsoft.Network/publicIPAddresses"
FIREWALL_TYPE = "Microsoft.Network/azureFirewalls"
POLICY_TYPE = "Microsoft.Network/firewallPolicies"
RCG_TYPE = "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
VM_TYPE = "Microsoft.Compute/virtualMachines"

# Names of Network child resources: up to 80 characters, starting with a word character and ending
# with a word character or '_', with word characters, '.', '-' and '_' between.
_NAME = re.compile(r"^\w(?:[\w.-]{0,78}\w)?$")


def check_name(name: str, target: str = "name") -> None:
    if not _NAME.match(name):
        raise bad_request(
            "InvalidResourceName",
            f"Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with "
            "a word character, and it must end with a word character or with '_'. The name may contain "
            "word characters or '.', '-', '_'.",
            target,
        )


def properties(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if props is None:
        props = body["properties"] = {}
    if not isinstance(props, dict):
        raise bad_request(
            "InvalidRequestFormat", "Cannot parse the request: 'properties' must be an object.", "properties"
        )
    return props


def require_item(value: Any, target: str) -> dict[str, Any]:
    """An element of an array that must be an object (a rule, a collection, an ip configuration)."""
    if not isinstance(value, dict):
        raise bad_request("InvalidRequestFormat", f"Property '{target}' must be an object.", target)
    return value


def unique_name(
    item: dict[str, Any],
    target: str,
    seen: set[str],
    code: str,
    label: str,
    *,
    scope: str = "",
    check: bool = True,
) -> str:
    """The item's `name`, checked (unless `check` is off) and unique (case-insensitive) in `seen`."""
    name = require_string(item.get("name"), f"{target}.name")
    assert name is not None
    if check:
        check_name(name, f"{target}.name")
    if name.lower() in seen:
        raise bad_request(code, f"{label} {name} is used more than once{scope}.", target)
    seen.add(name.lower())
    return name


def missing_property(target: str) -> ArmError:
    return bad_request("InvalidRequestFormat", f"Required property '{target}' is missing.", target)


def _require_type(value: Any, target: str, expected: type, noun: str, *, required: bool) -> Any:
    """`value` if it is of the expected type; None if it is absent and optional."""
    if value is None:
        if required:
            raise missing_property(target)
        return None
    if not isinstance(value, expected):
        raise bad_request("InvalidRequestFormat", f"Property '{target}' must be {noun}.", target)
    return value


def require_list(value: Any, target: str, *, required: bool = False) -> list[Any]:
    items: list[Any] | None = _require_type(value, target, list, "an array", required=required)
    return [] if items is None else items


def require_object(value: Any, target: str, *, required: bool = False) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _require_type(value, target, dict, "an object", required=required)
    return found


def require_string(value: Any, target: str, *, required: bool = True) -> str | None:
    text: str | None = _require_type(
        None if value == "" else value, target, str, "a string", required=required
    )
    return text


def require_int(value: Any, target: str, low: int, high: int, *, code: str = "InvalidRequestFormat") -> int:
    if value is None:
        raise missing_property(target)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise bad_request("InvalidRequestFormat", f"Property '{target}' must be an integer.", target)
    if not low <= value <= high:
        raise bad_request(
            code, f"Property '{target}' has invalid value {value}. Allowed range {low}-{high}.", target
        )
    return int(value)


def one_of(value: Any, allowed: tuple[str, ...], target: str, *, required: bool = True) -> str | None:
    """Case-insensitive enum check; answers the canonical spelling."""
    if value is None and not required:
        return None
    if isinstance(value, str):
        for option in allowed:
            if option.lower() == value.lower():
                return option
    raise bad_request(
        "InvalidRequestFormat",
        f"Property '{target}' has invalid value {value!r}. Allowed values: {', '.join(allowed)}.",
        target,
    )


def reference_id(value: Any, target: str, *, required: bool = False) -> str | None:
    """The id of a `{"id": ...}` reference, or None."""
    ref = require_object(value, target, required=required)
    if ref is None:
        return None
    ref_id = ref.get("id")
    if not isinstance(ref_id, str) or ids.parse(ref_id) is None:
        raise bad_request(
            "InvalidRequestFormat", f"Property '{target}.id' must be a resource id.", f"{target}.id"
        )
    return ref_id


def require_record_body(store: Store, ref_id: str, type_key: str, target: str) -> dict[str, Any]:
    record = store.get(ref_id)
    if record is None or record.type_key.lower() != type_key.lower():
        raise invalid_resource_reference(ref_id, target, target)
    return record.body


def referenced_body(
    store: Store, value: Any, type_key: str, target: str, *, required: bool = False
) -> dict[str, Any] | None:
    """The stored body a `{"id": ...}` reference of the given type points at (None if omitted)."""
    ref_id = reference_id(value, target, required=required)
    if not ref_id:
        return None
    return require_record_body(store, ref_id, type_key, target)


def require_subnet(store: Store, subnet_id: str, target: str) -> dict[str, Any]:
    subnet = find_subnet(store, subnet_id)
    if subnet is None:
        raise invalid_resource_reference(subnet_id, target, target)
    return subnet


def find_subnet(store: Store, subnet_id: str) -> dict[str, Any] | None:
    rid = ids.parse(subnet_id)
    if rid is None or rid.type_key.lower() != (VNET_TYPE + "/subnets").lower() or rid.parent is None:
        return None
    vnet = store.get(str(rid.parent))
    if vnet is None:
        return None
    for subnet in vnet.body.get("properties", {}).get("subnets", []):
        if subnet.get("name", "").lower() == rid.name.lower():
            return dict(subnet)
    return None


def subnet_networks(subnet: dict[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    props = subnet.get("properties", {})
    prefixes = props.get("addressPrefixes") or (
        [props["addressPrefix"]] if props.get("addressPrefix") else []
    )
    return [ipaddress.ip_network(p, strict=False) for p in prefixes]


def new_guid() -> str:
    return str(uuid.uuid4())


def resource_guid(existing: dict[str, Any] | None) -> str:
    """A resource keeps its `resourceGuid` across updates."""
    guid: str | None = (existing or {}).get("properties", {}).get("resourceGuid")
    return guid or new_guid()


def kept_fields(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """The top-level fields of a request body that are stored as sent (location, tags, ...)."""
    return {k: v for k, v in body.items() if k in names}


# Fields ARM sets itself on every resource: a client's copy is never stored.
_IDENTITY_FIELDS = frozenset({"id", "name", "type", "etag"})


def keep_unmodelled(
    request: dict[str, Any], answer: dict[str, Any], *, computed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Store the fields of `request` the emulator does not model, as sent, at the top level and in
    `properties`. They stand for properties a newer api-version of the service knows and an older SDK
    does not: a client that writes back what it read must not lose them (issue 16 item 6), and a test
    can only show that if the emulator keeps them. `computed` names the read-only properties the
    emulator derives itself (back-references, `resourceGuid`, ...), which a client's copy never
    overrides; modelled fields are already in `answer` and win."""
    for key, value in request.items():
        if key not in answer and key not in _IDENTITY_FIELDS and key != "properties":
            answer[key] = copy.deepcopy(value)
    sent = request.get("properties")
    if isinstance(sent, dict):
        props = answer.setdefault("properties", {})
        for key, value in sent.items():
            if key not in props and key not in computed and key != "provisioningState":
                props[key] = copy.deepcopy(value)
    return answer


def sub_resource(parent_id: str, kind: str, name: str) -> str:
    return f"{parent_id}/{kind}/{name}"


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


_RELATIONS = (
    "ipconfigs_by_subnet",  # subnet -> ip configurations (NICs, firewalls) in it
    "used_ips_by_subnet",  # subnet -> private IP -> the ip configuration holding it
    "nics_by_nsg",
    "subnets_by_nsg",
    "ipconfig_by_public_ip",
    "vm_by_nic",
    "firewalls_by_policy",
    "peerings_by_remote",  # VNet -> the peerings (of other VNets) whose remoteVirtualNetwork it is
)


def _contributions(record: Record) -> list[tuple[str, str, str, str]]:
    """(relation, target id, source key, value) for what this record points at."""
    kind = record.type_key.lower()
    body = record.body
    found: list[tuple[str, str, str, str]] = []
    props = body.get("properties") or {}
    if kind in (NIC_TYPE.lower(), FIREWALL_TYPE.lower()):
        if kind == NIC_TYPE.lower():
            nsg_id = (props.get("networkSecurityGroup") or {}).get("id")
            if nsg_id:
                found.append(("nics_by_nsg", nsg_id, body["id"], body["id"]))
        else:
            policy_id = (props.get("firewallPolicy") or {}).get("id")
            if policy_id:
                found.append(("firewalls_by_policy", policy_id, body["id"], body["id"]))
        for config in props.get("ipConfigurations") or []:
            cprops = config.get("properties") or {}
            subnet_id = (cprops.get("subnet") or {}).get("id")
            if subnet_id:
                found.append(("ipconfigs_by_subnet", subnet_id, config["id"], config["id"]))
                if cprops.get("privateIPAddress"):
                    found.append(("used_ips_by_subnet", subnet_id, cprops["privateIPAddress"], config["id"]))
            pip_id = (cprops.get("publicIPAddress") or {}).get("id")
            if pip_id:
                found.append(("ipconfig_by_public_ip", pip_id, config["id"], config["id"]))
    elif kind == VNET_TYPE.lower():
        for subnet in props.get("subnets") or []:
            nsg_id = ((subnet.get("properties") or {}).get("networkSecurityGroup") or {}).get("id")
            if nsg_id:
                found.append(("subnets_by_nsg", nsg_id, subnet["id"], subnet["id"]))
        for peering in props.get("virtualNetworkPeerings") or []:
            remote_id = ((peering.get("properties") or {}).get("remoteVirtualNetwork") or {}).get("id")
            if isinstance(remote_id, str) and isinstance(peering.get("id"), str):
                found.append(("peerings_by_remote", remote_id, peering["id"], peering["id"]))
    elif kind == VM_TYPE.lower():
        for nic_ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
            if isinstance(nic_ref, dict) and isinstance(nic_ref.get("id"), str):
                found.append(("vm_by_nic", nic_ref["id"], body["id"], body["id"]))
    return found


class BackReferences:
    """Who points at whom (a subnet's ip configurations, an NSG's NICs and subnets, a public IP's
    holder, a NIC's VM, a policy's firewalls), kept current on every store change."""

    def __init__(self) -> None:
        self._relations: dict[str, dict[str, dict[str, str]]] = {r: {} for r in _RELATIONS}
        self._by_record: dict[str, list[tuple[str, str, str, str]]] = {}
        self.allocation_hints: dict[str, int] = {}  # subnet -> next private IP to try (as int)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def update(self, old: Record | None, new: Record | None) -> None:
        if old is not None:
            for relation, target, source, _ in self._by_record.pop(old.id.lower(), []):
                sources = self._relations[relation].get(target.lower())
                if sources is not None:
                    sources.pop(source, None)
                    if not sources:
                        del self._relations[relation][target.lower()]
        if new is not None:
            contributions = _contributions(new)
            if contributions:
                self._by_record[new.id.lower()] = contributions
            for relation, target, source, value in contributions:
                self._relations[relation].setdefault(target.lower(), {})[source] = value

    def sources(self, relation: str, target_id: str) -> list[str]:
        return list(self._relations[relation].get(target_id.lower(), {}).values())

    def first(self, relation: str, target_id: str) -> str | None:
        values = self._relations[relation].get(target_id.lower())
        return next(iter(values.values())) if values else None

    def used_ips(self, subnet_id: str) -> dict[str, str]:
        """Private IP -> holding ip configuration, in one subnet."""
        return self._relations["used_ips_by_subnet"].get(subnet_id.lower(), {})


_INDEX = "network.backrefs"


def install_back_references(store: Store) -> None:
    index = BackReferences()
    store.indexes[_INDEX] = index
    store.add_listener(index)


def refs_of(call: Call) -> BackReferences:
    index: BackReferences = call.store.indexes[_INDEX]
    return index


def id_list(values: list[str]) -> list[dict[str, str]]:
    return [{"id": v} for v in values]
