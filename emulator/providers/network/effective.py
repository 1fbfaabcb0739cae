"""`POST .../networkInterfaces/{nic}/effectiveNetworkSecurityGroups` (`az network nic
list-effective-nsg`, the SDK's `begin_list_effective_network_security_groups`).

Long-running as the spec declares it (networkInterface.json, `x-ms-long-running-operation`,
`final-state-via: location`): 202 with `Location`, whose result is the
`EffectiveNetworkSecurityGroupListResult`. Computed from the NSGs of the NIC's subnets and of the NIC
itself (subnet first: inbound traffic meets the subnet's NSG first); one entry per NSG, with every
association it has to this NIC (an NSG on both the subnet and the NIC is one entry naming both).
Rules as the Network RP renders them (spec definition `EffectiveNetworkSecurityRule`, example
`NetworkInterfaceEffectiveNSGList.json` in azure-rest-api-specs): `name` `securityRules/{name}` or
`defaultSecurityRules/{name}`, protocol `Tcp|Udp|All` (`*` → `All`), ports as ranges (`*` →
`0-65535`, `22` → `22-22`), `*` addresses as `0.0.0.0/0`, service tags kept with their
`expanded...Prefix` (VirtualNetwork: the VNet's and its peers' address spaces plus 168.63.129.16/32;
AzureLoadBalancer: 168.63.129.16/32), sorted by direction then priority. Not modelled: Azure Virtual
Network Manager admin rules, the `tagMap`, and live Azure's refusal when the NIC's VM is not running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator import ids
from emulator.providers.network.common import NSG_TYPE, find_subnet
from emulator.providers.network.nsg import default_rules

if TYPE_CHECKING:
    from emulator.engine import Call, Response
    from emulator.ids import ResourceId
    from emulator.resource import ResourceType
    from emulator.store import Record

_HOST_IP = "168.63.129.16/32"  # Azure's platform address, part of VirtualNetwork and AzureLoadBalancer


def _ports(single: Any, plural: Any) -> list[str]:
    values = [str(v) for v in plural] if isinstance(plural, list) and plural else [str(single or "*")]
    out = []
    for value in values:
        if value == "*":
            out.append("0-65535")
        elif "-" in value:
            out.append(value)
        else:
            out.append(f"{value}-{value}")
    return out


def _addresses(single: Any, plural: Any) -> list[str]:
    values = [str(v) for v in plural] if isinstance(plural, list) and plural else [str(single or "*")]
    return ["0.0.0.0/0" if value == "*" else value for value in values]


def _expand(prefix: str, vnet_space: list[str]) -> list[str] | None:
    if prefix.lower() == "virtualnetwork":
        return [*vnet_space, _HOST_IP]
    if prefix.lower() == "azureloadbalancer":
        return [_HOST_IP]
    return None


def _protocol(value: Any) -> str:
    text = str(value or "*")
    return "All" if text == "*" else text[:1].upper() + text[1:].lower()


def effective_rule(kind: str, rule: dict[str, Any], vnet_space: list[str]) -> dict[str, Any]:
    props = rule.get("properties") or {}
    sources = _addresses(props.get("sourceAddressPrefix"), props.get("sourceAddressPrefixes"))
    destinations = _addresses(props.get("destinationAddressPrefix"), props.get("destinationAddressPrefixes"))
    source_ports = _ports(props.get("sourcePortRange"), props.get("sourcePortRanges"))
    destination_ports = _ports(props.get("destinationPortRange"), props.get("destinationPortRanges"))
    answer: dict[str, Any] = {
        "name": f"{kind}/{rule.get('name')}",
        "protocol": _protocol(props.get("protocol")),
        "sourcePortRange": source_ports[0],
        "destinationPortRange": destination_ports[0],
        "sourcePortRanges": source_ports,
        "destinationPortRanges": destination_ports,
        "sourceAddressPrefix": sources[0],
        "destinationAddressPrefix": destinations[0],
        "sourceAddressPrefixes": sources,
        "destinationAddressPrefixes": destinations,
        "access": props.get("access"),
        "priority": props.get("priority"),
        "direction": props.get("direction"),
    }
    expanded_source = [p for s in sources for p in (_expand(s, vnet_space) or [])]
    expanded_destination = [p for d in destinations for p in (_expand(d, vnet_space) or [])]
    if expanded_source:
        answer["expandedSourceAddressPrefix"] = expanded_source
    if expanded_destination:
        answer["expandedDestinationAddressPrefix"] = expanded_destination
    return answer


def _vnet_space(call: Call, subnet_ids: list[str]) -> list[str]:
    space: list[str] = []
    for subnet_id in subnet_ids:
        rid = ids.parse(subnet_id)
        vnet = call.store.get(str(rid.parent)) if rid is not None and rid.parent is not None else None
        if vnet is None:
            continue
        props = vnet.body.get("properties") or {}
        space += (props.get("addressSpace") or {}).get("addressPrefixes") or []
        for peering in props.get("virtualNetworkPeerings") or []:
            pprops = peering.get("properties") or {}
            if pprops.get("peeringState") == "Connected":
                space += (pprops.get("remoteAddressSpace") or {}).get("addressPrefixes") or []
    return list(dict.fromkeys(space))


def effective_groups(call: Call, nic: dict[str, Any]) -> dict[str, Any]:
    props = nic.get("properties") or {}
    subnet_ids: list[str] = []
    for config in props.get("ipConfigurations") or []:
        subnet_id = ((config.get("properties") or {}).get("subnet") or {}).get("id")
        if isinstance(subnet_id, str) and subnet_id.lower() not in (s.lower() for s in subnet_ids):
            subnet_ids.append(subnet_id)
    vnet_space = _vnet_space(call, subnet_ids)
    entries: dict[str, dict[str, Any]] = {}  # nsg key -> entry, in evaluation order
    for subnet_id in subnet_ids:
        subnet = find_subnet(call.store, subnet_id)
        nsg_id = (((subnet or {}).get("properties") or {}).get("networkSecurityGroup") or {}).get("id")
        if isinstance(nsg_id, str):
            entry = entries.setdefault(ids.key(nsg_id), {"nsg": nsg_id, "association": {}})
            entry["association"]["subnet"] = {"id": subnet.get("id", subnet_id) if subnet else subnet_id}
    nic_nsg = (props.get("networkSecurityGroup") or {}).get("id")
    if isinstance(nic_nsg, str):
        entry = entries.setdefault(ids.key(nic_nsg), {"nsg": nic_nsg, "association": {}})
        entry["association"]["networkInterface"] = {"id": nic["id"]}
    value = []
    for entry in entries.values():
        record = call.store.get(entry["nsg"])
        if record is None or record.type_key.lower() != NSG_TYPE.lower():
            continue
        nsg = record.body
        rules = [
            effective_rule("securityRules", r, vnet_space) for r in nsg["properties"].get("securityRules", [])
        ]
        rules += [
            effective_rule("defaultSecurityRules", r, vnet_space) for r in default_rules(nsg["id"], None)
        ]
        rules.sort(key=lambda r: (r["direction"] != "Inbound", r["priority"]))
        value.append(
            {
                "networkSecurityGroup": {"id": nsg["id"]},
                "association": entry["association"],
                "effectiveSecurityRules": rules,
            }
        )
    return {"value": value}


def list_effective_nsgs(resource_type: ResourceType) -> Any:
    def handler(call: Call, rid: ResourceId, record: Record) -> Response:
        return call.engine.start_action(call, resource_type, rid, effective_groups(call, record.body))

    return handler
