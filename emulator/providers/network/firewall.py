"""Azure Firewalls (classic rule collections), firewall policies and rule collection groups."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emulator.errors import bad_request
from emulator.providers.network.common import (
    FIREWALL_TYPE,
    NETWORK,
    POLICY_TYPE,
    RCG_TYPE,
    check_name,
    id_list,
    keep_unmodelled,
    kept_fields,
    one_of,
    properties,
    reference_id,
    referenced_body,
    refs_of,
    require_int,
    require_item,
    require_list,
    require_object,
    require_subnet,
    sub_resource,
    subnet_networks,
    unique_name,
)
from emulator.providers.network.publicip import attach_public_ip
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId

FIREWALL_SUBNET = "AzureFirewallSubnet"
NAT_PROTOCOLS = ("TCP", "UDP", "Any", "ICMP")
NETWORK_PROTOCOLS = ("TCP", "UDP", "Any", "ICMP")
MAX_RULE_COLLECTIONS = 2000
MAX_DNAT_DESTINATIONS = 250


def _strings(value: Any, target: str) -> list[str]:
    items = require_list(value, target)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise bad_request(
                "InvalidRequestFormat", f"Property '{target}[{i}]' must be a string.", f"{target}[{i}]"
            )
    return list(items)


def _required_strings(
    rule: dict[str, Any], field: str, target: str, code: str, what: str | None = None
) -> list[str]:
    """A rule's string array that must not be empty (`what` says what is missing, default the field)."""
    values = _strings(rule.get(field), f"{target}.{field}")
    if not values:
        raise bad_request(code, f"Rule {rule.get('name')} must have {what or field}.", f"{target}.{field}")
    return values


def _each(values: list[str], target: str, check: Callable[[str, str], str]) -> list[str]:
    return [check(value, f"{target}[{i}]") for i, value in enumerate(values)]


def _one_of_each(values: list[str], allowed: tuple[str, ...], target: str) -> list[str]:
    return [str(one_of(value, allowed, f"{target}[{i}]")) for i, value in enumerate(values)]


def _single_port(value: Any, target: str, high: int, code: str, message: str) -> str:
    """A single port 1-`high` as the string the wire carries (NAT rules take no ranges)."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise bad_request(code, message, target)
    return text


def _nat_port(value: Any, target: str) -> str:
    message = f"Port {value!r} in {target} is invalid: NAT rules support single ports 1-63999."
    return _single_port(value, target, 63999, "AzureFirewallNatRuleInvalidPort", message)


def _translated_port(value: Any, target: str) -> str:
    message = f"Translated port {value!r} in {target} must be 1-65535."
    return _single_port(value, target, 65535, "AzureFirewallNatRuleInvalidTranslatedPort", message)


def _port_range(value: Any, target: str) -> str:
    text = value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""
    if text == "*":
        return text
    parts = text.split("-")
    if not (1 <= len(parts) <= 2 and all(p.isdigit() and 0 <= int(p) <= 65535 for p in parts)):
        raise bad_request("AzureFirewallRuleInvalidPort", f"Port {value!r} in {target} is invalid.", target)
    return text


def _address(value: str, target: str, *, allow_ranges: bool = True) -> str:
    text = value.strip()
    if text == "*":
        return text
    try:
        if allow_ranges and "-" in text and "/" not in text:
            low, _ = (ipaddress.ip_address(p) for p in text.split("-", 1))
            if low.version == 6:
                raise ValueError
        else:
            network = ipaddress.ip_network(text, strict=False)
            if network.version == 6:
                raise ValueError
    except ValueError:
        raise bad_request(
            "AzureFirewallRuleInvalidIpAddressOrRangeFormat",
            f"Address {value!r} in {target} is not an IPv4 address, CIDR or range (IPv6 is not supported).",
            target,
        ) from None
    return text


def _addresses(value: Any, target: str) -> list[str]:
    return _each(_strings(value, target), target, _address)


def _named_rule(rule: Any, target: str, seen: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rule (an object with a valid name, unique in `seen`, and a short description) and a copy
    to answer."""
    rule = require_item(rule, target)
    unique_name(rule, target, seen, "AzureFirewallRuleNameDuplicate", "Rule name")
    description = rule.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        raise bad_request(
            "InvalidRequestFormat",
            f"{target}.description must be a string of at most 140 characters.",
            f"{target}.description",
        )
    return rule, dict(rule)


def _sources(rule: dict[str, Any], target: str) -> dict[str, list[str]]:
    return {
        "sourceAddresses": _addresses(rule.get("sourceAddresses"), f"{target}.sourceAddresses"),
        "sourceIpGroups": _strings(rule.get("sourceIpGroups"), f"{target}.sourceIpGroups"),
    }


def _require_sources(rule: dict[str, Any], target: str) -> None:
    if not rule.get("sourceAddresses") and not rule.get("sourceIpGroups"):
        raise bad_request(
            "AzureFirewallRuleSourceMissing",
            f"Rule {rule.get('name')} must have sourceAddresses or sourceIpGroups.",
            f"{target}.sourceAddresses",
        )


def _require_translation(rule: dict[str, Any], target: str, code: str) -> None:
    if not rule.get("translatedAddress") and not rule.get("translatedFqdn"):
        raise bad_request(
            code,
            f"Rule {rule.get('name')} must have translatedAddress or translatedFqdn.",
            f"{target}.translatedAddress",
        )


# --- classic firewall rule collections ----------------------------------------------------------------


def _nat_rule(rule: Any, target: str, seen: set[str], firewall_ips: set[str] | None) -> dict[str, Any]:
    rule, answer = _named_rule(rule, target, seen)
    answer.update(_sources(rule, target))
    _require_sources(answer, target)
    destinations = _required_strings(
        rule,
        "destinationAddresses",
        target,
        "AzureFirewallNatRuleDestinationMissing",
        "destinationAddresses (the firewall public IP)",
    )
    for i, destination in enumerate(destinations):
        _address(destination, f"{target}.destinationAddresses[{i}]", allow_ranges=False)
        # Live Azure took a DNAT rule on a firewall without public IPs (recordings); with IPs, the
        # destination must be one of them.
        if firewall_ips and destination not in firewall_ips:
            raise bad_request(
                "AzureFirewallNatRuleDestinationNotFirewallPublicIp",
                f"Destination address {destination} of NAT rule {rule.get('name')} is not a "
                f"public IP address "
                f"of the firewall ({', '.join(sorted(firewall_ips)) or 'none'}).",
                f"{target}.destinationAddresses[{i}]",
            )
    answer["destinationAddresses"] = destinations
    ports = _required_strings(rule, "destinationPorts", target, "AzureFirewallNatRulePortMissing")
    answer["destinationPorts"] = _each(ports, f"{target}.destinationPorts", _nat_port)
    protocols = _required_strings(rule, "protocols", target, "InvalidRequestFormat")
    answer["protocols"] = _one_of_each(protocols, NAT_PROTOCOLS, f"{target}.protocols")
    _require_translation(rule, target, "AzureFirewallNatRuleTranslatedAddressMissing")
    if rule.get("translatedAddress"):
        answer["translatedAddress"] = _address(
            str(rule["translatedAddress"]), f"{target}.translatedAddress", allow_ranges=False
        )
    answer["translatedPort"] = _translated_port(rule.get("translatedPort"), f"{target}.translatedPort")
    return answer


def _network_rule(rule: Any, target: str, seen: set[str]) -> dict[str, Any]:
    rule, answer = _named_rule(rule, target, seen)
    answer.update(_sources(rule, target))
    answer["destinationIpGroups"] = _strings(rule.get("destinationIpGroups"), f"{target}.destinationIpGroups")
    _require_sources(answer, target)
    answer["destinationAddresses"] = _addresses(
        rule.get("destinationAddresses"), f"{target}.destinationAddresses"
    )
    if not (
        answer["destinationAddresses"] or rule.get("destinationFqdns") or rule.get("destinationIpGroups")
    ):
        raise bad_request(
            "AzureFirewallRuleDestinationMissing",
            f"Rule {rule.get('name')} must have a destination.",
            f"{target}.destinationAddresses",
        )
    ports = _required_strings(rule, "destinationPorts", target, "InvalidRequestFormat")
    answer["destinationPorts"] = _each(ports, f"{target}.destinationPorts", _port_range)
    protocols = _strings(rule.get("protocols"), f"{target}.protocols")
    answer["protocols"] = _one_of_each(protocols, NETWORK_PROTOCOLS, f"{target}.protocols")
    return answer


def _application_rule(rule: Any, target: str, seen: set[str]) -> dict[str, Any]:
    rule, answer = _named_rule(rule, target, seen)
    answer["sourceAddresses"] = _addresses(rule.get("sourceAddresses"), f"{target}.sourceAddresses")
    _require_sources(answer, target)
    for i, protocol in enumerate(require_list(rule.get("protocols"), f"{target}.protocols")):
        if not isinstance(protocol, dict):
            raise bad_request("InvalidRequestFormat", f"{target}.protocols[{i}] must be an object.")
        one_of(
            protocol.get("protocolType"), ("Http", "Https", "Mssql"), f"{target}.protocols[{i}].protocolType"
        )
    return answer


_KINDS = {
    "natRuleCollections": ("Dnat", "Snat"),
    "networkRuleCollections": ("Allow", "Deny"),
    "applicationRuleCollections": ("Allow", "Deny"),
}


def _classic_collections(
    firewall_id: str, props: dict[str, Any], firewall_ips: set[str]
) -> dict[str, list[dict[str, Any]]]:
    answer: dict[str, list[dict[str, Any]]] = {}
    total = 0
    dnat_destinations: set[tuple[str, str, str]] = set()
    for kind, actions in _KINDS.items():
        names: set[str] = set()
        priorities: dict[int, str] = {}
        collections = []
        for i, collection in enumerate(require_list(props.get(kind), f"properties.{kind}")):
            target = f"properties.{kind}[{i}]"
            collection = require_item(collection, target)
            name = unique_name(
                collection,
                target,
                names,
                "AzureFirewallRuleCollectionNameDuplicate",
                "Rule collection name",
                scope=f" in {kind}",
            )
            cprops = properties(collection)
            priority = require_int(
                cprops.get("priority"),
                f"{target}.properties.priority",
                100,
                65000,
                code="AzureFirewallRuleCollectionInvalidPriority",
            )
            if priority in priorities:
                raise bad_request(
                    "AzureFirewallRuleCollectionDuplicatePriority",
                    f"Rule collections {priorities[priority]} and {name} of {kind} have the same "
                    f"priority {priority}.",
                    f"{target}.properties.priority",
                )
            priorities[priority] = name
            action = require_object(cprops.get("action"), f"{target}.properties.action", required=True)
            assert action is not None
            action_type = one_of(action.get("type"), actions, f"{target}.properties.action.type")
            seen: set[str] = set()
            rules = []
            for j, rule in enumerate(require_list(cprops.get("rules"), f"{target}.properties.rules")):
                rtarget = f"{target}.properties.rules[{j}]"
                if kind == "natRuleCollections":
                    checked = _nat_rule(rule, rtarget, seen, firewall_ips)
                    for destination in checked["destinationAddresses"]:
                        for port in checked["destinationPorts"]:
                            for protocol in checked["protocols"]:
                                dnat_destinations.add((destination, port, protocol))
                elif kind == "networkRuleCollections":
                    checked = _network_rule(rule, rtarget, seen)
                else:
                    checked = _application_rule(rule, rtarget, seen)
                rules.append(checked)
            collections.append(
                {
                    "name": name,
                    "id": sub_resource(firewall_id, kind, name),
                    "type": f"{FIREWALL_TYPE}/{kind}",
                    "properties": {
                        "priority": priority,
                        "action": {**action, "type": action_type},
                        "rules": rules,
                        "provisioningState": "Succeeded",
                    },
                }
            )
        total += len(collections)
        answer[kind] = collections
    if total > MAX_RULE_COLLECTIONS:
        raise bad_request(
            "AzureFirewallTooManyRuleCollections",
            f"A firewall supports at most {MAX_RULE_COLLECTIONS} rule collections; got {total}.",
        )
    if len(dnat_destinations) > MAX_DNAT_DESTINATIONS:
        raise bad_request(
            "AzureFirewallTooManyDnatDestinations",
            f"A firewall supports at most {MAX_DNAT_DESTINATIONS} unique DNAT destinations "
            f"(address, port, protocol); got {len(dnat_destinations)}.",
            "properties.natRuleCollections",
        )
    return answer


def _sku_tier(sku: dict[str, Any]) -> str | None:
    return one_of(sku.get("tier", "Standard"), ("Basic", "Standard", "Premium"), "properties.sku.tier")


def _threat_intel_mode(props: dict[str, Any]) -> str | None:
    return one_of(
        props.get("threatIntelMode", "Alert"), ("Alert", "Deny", "Off"), "properties.threatIntelMode"
    )


class AzureFirewalls(ResourceType):
    namespace = NETWORK
    types = ("azureFirewalls",)
    long_running = True
    busy_status = 409
    etag_arrays = (
        ("properties", "ipConfigurations"),
        ("properties", "natRuleCollections"),
        ("properties", "networkRuleCollections"),
        ("properties", "applicationRuleCollections"),
    )

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "azureFirewallName")
        firewall_id = str(rid)
        props = properties(body)
        sku = require_object(props.get("sku"), "properties.sku") or {}
        sku_answer = {
            "name": one_of(sku.get("name", "AZFW_VNet"), ("AZFW_VNet", "AZFW_Hub"), "properties.sku.name"),
            "tier": _sku_tier(sku),
        }
        configs = []
        firewall_ips: set[str] = set()
        names: set[str] = set()
        for i, config in enumerate(
            require_list(props.get("ipConfigurations"), "properties.ipConfigurations")
        ):
            target = f"properties.ipConfigurations[{i}]"
            config = require_item(config, target)
            name = unique_name(
                config, target, names, "DuplicateResourceName", "IP configuration name", check=False
            )
            cprops = properties(config)
            answer_props: dict[str, Any] = {}
            subnet_id = reference_id(cprops.get("subnet"), f"{target}.properties.subnet", required=i == 0)
            if subnet_id:
                if i != 0:
                    raise bad_request(
                        "AzureFirewallSubnetOnlyOnFirstIpConfiguration",
                        "Only the first IP configuration of a firewall references the subnet.",
                        f"{target}.properties.subnet",
                    )
                subnet = require_subnet(call.store, subnet_id, f"{target}.properties.subnet")
                if subnet["name"] != FIREWALL_SUBNET:
                    raise bad_request(
                        "AzureFirewallSubnetNameInvalid",
                        f"Subnet of an Azure Firewall must be named {FIREWALL_SUBNET}; got {subnet['name']}.",
                        f"{target}.properties.subnet",
                    )
                networks = [n for n in subnet_networks(subnet) if n.version == 4]
                if not networks or networks[0].prefixlen > 26:
                    raise bad_request(
                        "AzureFirewallSubnetTooSmall",
                        f"{FIREWALL_SUBNET} must be at least a /26.",
                        f"{target}.properties.subnet",
                    )
                answer_props["subnet"] = {"id": subnet["id"]}
                # Azure gives the firewall the fourth address of its subnet (x.x.x.4).
                answer_props["privateIPAddress"] = str(networks[0].network_address + 4)
                answer_props["privateIPAllocationMethod"] = "Dynamic"
            pip = attach_public_ip(
                call,
                cprops.get("publicIPAddress"),
                f"{target}.properties.publicIPAddress",
                firewall_id,
                required=sku_answer["name"] == "AZFW_VNet",
            )
            if pip:
                if (
                    pip.get("sku", {}).get("name") == "Basic"
                    or pip["properties"].get("publicIPAllocationMethod") != "Static"
                ):
                    raise bad_request(
                        "AzureFirewallPublicIpMustBeStandardStatic",
                        "An Azure Firewall needs a Standard SKU, static public IP address.",
                        f"{target}.properties.publicIPAddress",
                    )
                answer_props["publicIPAddress"] = {"id": pip["id"]}
                if pip["properties"].get("ipAddress"):
                    firewall_ips.add(pip["properties"]["ipAddress"])
            configs.append(
                {
                    "name": name,
                    "id": sub_resource(firewall_id, "azureFirewallIpConfigurations", name),
                    "type": "Microsoft.Network/azureFirewalls/azureFirewallIpConfigurations",
                    "properties": {**answer_props, "provisioningState": "Succeeded"},
                }
            )
        collections = _classic_collections(firewall_id, props, firewall_ips)
        answer_props_fw: dict[str, Any] = {
            "sku": sku_answer,
            "threatIntelMode": _threat_intel_mode(props),
            "ipConfigurations": configs,
            **collections,
            "additionalProperties": props.get("additionalProperties") or {},
        }
        policy = referenced_body(
            call.store, props.get("firewallPolicy"), POLICY_TYPE, "properties.firewallPolicy"
        )
        if policy:
            if any(collections.values()):
                raise bad_request(
                    "AzureFirewallClassicRulesNotAllowedWithFirewallPolicy",
                    "A firewall that uses a firewall policy cannot have classic rule collections.",
                    "properties.firewallPolicy",
                )
            answer_props_fw["firewallPolicy"] = {"id": policy["id"]}
        for passthrough in (
            "hubIPAddresses",
            "virtualHub",
            "autoscaleConfiguration",
            "managementIpConfiguration",
        ):
            if props.get(passthrough) is not None:
                answer_props_fw[passthrough] = props[passthrough]
        answer = {**kept_fields(body, "location", "tags", "zones"), "properties": answer_props_fw}
        return keep_unmodelled(body, answer)


# --- firewall policies ----------------------------------------------------------------------------------


def _size(body: dict[str, Any]) -> str:
    return f"{len(json.dumps(body)) / 1_048_576:.9f} MB"


class FirewallPolicies(ResourceType):
    namespace = NETWORK
    types = ("firewallPolicies",)
    arm_type = "Microsoft.Network/FirewallPolicies"
    long_running = True
    long_running_delete = False  # deleting a policy answers a synchronous 200
    operations_segment = "nfvOperations"
    etag_style = "strong"
    busy_status = 409

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "firewallPolicyName")
        props = dict(properties(body))
        for read_only in ("provisioningState", "ruleCollectionGroups", "firewalls", "childPolicies", "size"):
            props.pop(read_only, None)
        sku = require_object(props.get("sku"), "properties.sku") or {}
        props["sku"] = {"tier": _sku_tier(sku)}
        props["threatIntelMode"] = _threat_intel_mode(props)
        referenced_body(call.store, props.get("basePolicy"), POLICY_TYPE, "properties.basePolicy")
        return {**kept_fields(body, "location", "tags", "identity"), "properties": props}

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        groups = [r.body["id"] for r in call.store.list(RCG_TYPE, under=body["id"])]
        firewalls = refs_of(call).sources("firewalls_by_policy", body["id"])
        props = {
            "size": _size(body),
            **body.get("properties", {}),
            "childPolicies": [],
            "ruleCollectionGroups": id_list(groups),
            "firewalls": id_list(firewalls),
        }
        return {**body, "properties": props}

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        firewalls = refs_of(call).sources("firewalls_by_policy", str(rid))
        if firewalls:
            raise bad_request(
                "FirewallPolicyInUse",
                f"Firewall policy {rid.name} is associated with firewalls "
                f"({', '.join(firewalls)}) and cannot be deleted.",
            )


_COLLECTION_TYPES = ("FirewallPolicyNatRuleCollection", "FirewallPolicyFilterRuleCollection")


def _policy_rule(rule: Any, target: str, collection_type: str, seen: set[str]) -> dict[str, Any]:
    rule, answer = _named_rule(rule, target, seen)
    if collection_type == "FirewallPolicyNatRuleCollection":
        answer["ruleType"] = one_of(rule.get("ruleType"), ("NatRule",), f"{target}.ruleType")
        answer.update(_sources(rule, target))
        _require_sources(answer, target)
        destinations = _required_strings(
            rule, "destinationAddresses", target, "FirewallPolicyNatRuleDestinationMissing"
        )
        answer["destinationAddresses"] = [
            _address(d, f"{target}.destinationAddresses[{i}]", allow_ranges=False)
            for i, d in enumerate(destinations)
        ]
        ports = _required_strings(rule, "destinationPorts", target, "FirewallPolicyNatRulePortMissing")
        answer["destinationPorts"] = _each(ports, f"{target}.destinationPorts", _nat_port)
        protocols = _required_strings(rule, "ipProtocols", target, "InvalidRequestFormat")
        answer["ipProtocols"] = _one_of_each(protocols, ("TCP", "UDP"), f"{target}.ipProtocols")
        _require_translation(rule, target, "FirewallPolicyNatRuleTranslatedAddressMissing")
        answer["translatedPort"] = _translated_port(rule.get("translatedPort"), f"{target}.translatedPort")
        return answer
    answer["ruleType"] = one_of(
        rule.get("ruleType"), ("NetworkRule", "ApplicationRule", "NatRule"), f"{target}.ruleType"
    )
    if answer["ruleType"] == "NatRule":
        raise bad_request(
            "FirewallPolicyNatRuleInFilterCollection",
            "NAT rules belong in a FirewallPolicyNatRuleCollection.",
            f"{target}.ruleType",
        )
    answer["sourceAddresses"] = _addresses(rule.get("sourceAddresses"), f"{target}.sourceAddresses")
    _require_sources({**answer, "sourceIpGroups": rule.get("sourceIpGroups")}, target)
    if answer["ruleType"] == "NetworkRule":
        ports = _strings(rule.get("destinationPorts"), f"{target}.destinationPorts")
        answer["destinationPorts"] = _each(ports, f"{target}.destinationPorts", _port_range)
        protocols = _strings(rule.get("ipProtocols"), f"{target}.ipProtocols")
        answer["ipProtocols"] = _one_of_each(protocols, NETWORK_PROTOCOLS, f"{target}.ipProtocols")
    return answer


class RuleCollectionGroups(ResourceType):
    namespace = NETWORK
    types = ("firewallPolicies", "ruleCollectionGroups")
    arm_type = "Microsoft.Network/FirewallPolicies/RuleCollectionGroups"
    tracked = False
    long_running = True
    operations_segment = "nfvOperations"
    etag_style = "strong"
    busy_status = 409
    delete_returns_body = True
    delete_result_status = 200
    patch_supported = False

    def lock_id(self, rid: ResourceId) -> str:
        """Only one rule collection group of a policy can be updated at a time."""
        return str(rid.parent)

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        assert parent is not None and rid.parent is not None
        check_name(rid.name, "ruleCollectionGroupName")
        props = properties(body)
        priority = require_int(
            props.get("priority"),
            "properties.priority",
            100,
            65000,
            code="FirewallPolicyRuleCollectionGroupInvalidPriority",
        )
        for other in call.store.list(RCG_TYPE, under=str(rid.parent)):
            if (
                other.body["name"].lower() != rid.name.lower()
                and other.body["properties"].get("priority") == priority
            ):
                raise bad_request(
                    "FirewallPolicyRuleCollectionGroupDuplicatePriority",
                    f"Rule collection group {other.body['name']} of this policy already has priority "
                    f"{priority}.",
                    "properties.priority",
                )
        collections = []
        names: set[str] = set()
        for i, collection in enumerate(
            require_list(props.get("ruleCollections"), "properties.ruleCollections")
        ):
            target = f"properties.ruleCollections[{i}]"
            collection = require_item(collection, target)
            answer = dict(collection)
            answer["ruleCollectionType"] = one_of(
                collection.get("ruleCollectionType"), _COLLECTION_TYPES, f"{target}.ruleCollectionType"
            )
            unique_name(
                collection, target, names, "FirewallPolicyRuleCollectionNameDuplicate", "Rule collection name"
            )
            answer["priority"] = require_int(
                collection.get("priority"),
                f"{target}.priority",
                100,
                65000,
                code="FirewallPolicyRuleCollectionInvalidPriority",
            )
            action = require_object(collection.get("action"), f"{target}.action", required=True)
            assert action is not None
            if answer["ruleCollectionType"] == "FirewallPolicyNatRuleCollection":
                # Sent as "DNAT", answered as "Dnat", as the live service does.
                answer["action"] = {
                    "type": one_of(action.get("type"), ("Dnat", "Snat"), f"{target}.action.type")
                }
            else:
                answer["action"] = {
                    "type": one_of(action.get("type"), ("Allow", "Deny"), f"{target}.action.type")
                }
            seen: set[str] = set()
            answer["rules"] = [
                _policy_rule(rule, f"{target}.rules[{j}]", answer["ruleCollectionType"], seen)
                for j, rule in enumerate(require_list(collection.get("rules"), f"{target}.rules"))
            ]
            collections.append(answer)
        if len(collections) > MAX_RULE_COLLECTIONS:
            raise bad_request(
                "FirewallPolicyTooManyRuleCollections",
                f"At most {MAX_RULE_COLLECTIONS} rule collections are allowed.",
            )
        answer = {
            "location": parent.get("location"),
            "properties": {"priority": priority, "ruleCollections": collections},
        }
        return keep_unmodelled(body, answer, computed=("size",))

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "properties": {"size": _size(body), **body.get("properties", {})}}
