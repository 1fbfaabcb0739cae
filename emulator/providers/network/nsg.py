"""Network security groups, their `securityRules` (child resources stored inside the NSG) and the
six read-only `defaultSecurityRules`."""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from emulator.errors import ArmError, bad_request
from emulator.providers.network.common import (
    NETWORK,
    NSG_TYPE,
    check_name,
    id_list,
    keep_unmodelled,
    kept_fields,
    one_of,
    properties,
    refs_of,
    require_item,
    require_list,
    require_string,
    resource_guid,
    sub_resource,
)
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId

RULE_TYPE = NSG_TYPE + "/securityRules"
DEFAULT_RULE_TYPE = NSG_TYPE + "/defaultSecurityRules"
PROTOCOLS = ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")
_PORT_RANGE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
# Live Azure accepts word tokens such as "789" or "1234" as prefixes (see the CLI recordings); what
# looks like an IPv4 address or CIDR must be a valid one.
_TOKEN = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_LOOKS_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+(/\d+)?$|^[\d.]+/\d+$")
MAX_RULES = 1000
# Read-only NSG properties the emulator derives (render adds the back-references).
_COMPUTED = ("defaultSecurityRules", "resourceGuid", "networkInterfaces", "subnets")

_DEFAULT_RULES = [
    (
        "AllowVnetInBound",
        "Allow inbound traffic from all VMs in VNET",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
        65000,
        "Inbound",
    ),
    (
        "AllowAzureLoadBalancerInBound",
        "Allow inbound traffic from azure load balancer",
        "AzureLoadBalancer",
        "*",
        "Allow",
        65001,
        "Inbound",
    ),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    (
        "AllowVnetOutBound",
        "Allow outbound traffic from all VMs to all VMs in VNET",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
        65000,
        "Outbound",
    ),
    (
        "AllowInternetOutBound",
        "Allow outbound traffic from all VMs to Internet",
        "*",
        "Internet",
        "Allow",
        65001,
        "Outbound",
    ),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
]


def default_rules(nsg_id: str, etag: str | None) -> list[dict[str, Any]]:
    rules = []
    for name, description, source, destination, access, priority, direction in _DEFAULT_RULES:
        rule: dict[str, Any] = {
            "name": name,
            "id": sub_resource(nsg_id, "defaultSecurityRules", name),
            "type": DEFAULT_RULE_TYPE,
            "properties": {
                "provisioningState": "Succeeded",
                "description": description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": source,
                "sourceAddressPrefixes": [],
                "destinationAddressPrefix": destination,
                "destinationAddressPrefixes": [],
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "access": access,
                "priority": priority,
                "direction": direction,
            },
        }
        if etag:
            rule["etag"] = etag
        rules.append(rule)
    return rules


def _check_port_range(value: Any, target: str) -> str:
    if not isinstance(value, str):
        raise bad_request(
            "SecurityRuleInvalidPortRange", f"Security rule parameter {target} must be a string.", target
        )
    if value == "*":
        return value
    match = _PORT_RANGE.match(value.strip())
    if not match:
        raise bad_request(
            "SecurityRuleInvalidPortRange",
            f"Security rule has invalid Port range. Value provided: {value}. Value should be an integer OR "
            "integer range with '-' delimiter. Valid range 0-65535.",
            target,
        )
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not (0 <= low <= 65535 and 0 <= high <= 65535 and low <= high):
        raise bad_request(
            "SecurityRuleInvalidPortRange",
            f"Security rule has invalid Port range. Value provided: {value}. Valid range 0-65535.",
            target,
        )
    return value.strip()


def _check_address_prefix(value: Any, target: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(
            "SecurityRuleInvalidAddressPrefix", f"Security rule parameter {target} is empty.", target
        )
    text = value.strip()
    if text == "*" or (_TOKEN.match(text) and not _LOOKS_IPV4.match(text)):
        return text
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise bad_request(
            "SecurityRuleInvalidAddressPrefix",
            f"Security rule has invalid Address prefix. Value provided: {value}.",
            target,
        ) from None
    return text


def _singular_or_plural(
    props: dict[str, Any], singular: str, plural: str, target: str, check: Any, *, required: bool
) -> None:
    """A rule field comes either singular or plural ("augmented rules"), never both."""
    one = props.get(singular)
    many = props.get(plural)
    if many is not None and not isinstance(many, list):
        raise bad_request(
            "InvalidRequestFormat", f"Property '{target}.{plural}' must be an array.", f"{target}.{plural}"
        )
    if one not in (None, "") and many:
        raise bad_request(
            "SecurityRuleParameterContainsUnsupportedValue",
            f"Security rule {target} specifies both {singular} and {plural}; use one of them.",
            f"{target}.{plural}",
        )
    if one not in (None, ""):
        props[singular] = check(one, f"{target}.{singular}")
        props[plural] = []
    elif many:
        props[plural] = [check(item, f"{target}.{plural}[{i}]") for i, item in enumerate(many)]
        props.pop(singular, None)
    elif required:
        raise bad_request(
            "SecurityRuleParameterMissing",
            f"Security rule {target} must specify {singular} or {plural}.",
            f"{target}.{singular}",
        )
    else:
        props[plural] = []


def normalise_rule(nsg_id: str, rule: Any, target: str) -> dict[str, Any]:
    """Validate one security rule as the Network RP does and answer it in ARM's shape."""
    rule = require_item(rule, target)
    name = require_string(rule.get("name"), f"{target}.name")
    assert name is not None
    check_name(name, f"{target}.name")
    props = copy.deepcopy(properties(rule))
    for read_only in ("provisioningState",):
        props.pop(read_only, None)
    description = props.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise bad_request(
                "InvalidRequestFormat", f"Property '{target}.properties.description' must be a string."
            )
        if len(description) > 140:
            raise bad_request(
                "SecurityRuleDescriptionTooLong",
                f"Security rule {name} has a description of {len(description)} characters; at "
                f"most 140 are allowed.",
                f"{target}.properties.description",
            )
    ptarget = f"{target}.properties"
    props["protocol"] = one_of(props.get("protocol"), PROTOCOLS, f"{ptarget}.protocol")
    props["access"] = one_of(props.get("access"), ("Allow", "Deny"), f"{ptarget}.access")
    props["direction"] = one_of(props.get("direction"), ("Inbound", "Outbound"), f"{ptarget}.direction")
    if props.get("priority") is None:
        raise bad_request(
            "SecurityRuleInvalidPriority", f"Security rule {name} has no Priority.", f"{ptarget}.priority"
        )
    priority = props["priority"]
    if isinstance(priority, bool) or not isinstance(priority, int) or not 100 <= priority <= 4096:
        raise bad_request(
            "SecurityRuleInvalidPriority",
            f"Security rule has invalid Priority. Value provided: {priority}. Allowed range 100-4096.",
            f"{ptarget}.priority",
        )
    has_asg = {
        "source": bool(props.get("sourceApplicationSecurityGroups")),
        "destination": bool(props.get("destinationApplicationSecurityGroups")),
    }
    _singular_or_plural(
        props,
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
        ptarget,
        _check_address_prefix,
        required=not has_asg["source"],
    )
    _singular_or_plural(
        props,
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        ptarget,
        _check_address_prefix,
        required=not has_asg["destination"],
    )
    _singular_or_plural(
        props, "sourcePortRange", "sourcePortRanges", ptarget, _check_port_range, required=True
    )
    _singular_or_plural(
        props, "destinationPortRange", "destinationPortRanges", ptarget, _check_port_range, required=True
    )
    answer: dict[str, Any] = {
        "name": name,
        "id": sub_resource(nsg_id, "securityRules", name),
        "type": RULE_TYPE,
        "properties": props,
    }
    return keep_unmodelled(rule, answer)


def check_conflicts(rules: list[dict[str, Any]], target: str) -> None:
    """Names unique in the NSG; priority unique per direction (SecurityRuleConflict)."""
    names: dict[str, str] = {}
    slots: dict[tuple[str, int], str] = {}
    for rule in rules:
        lowered = rule["name"].lower()
        if lowered in names:
            raise bad_request(
                "InvalidRequestFormat",
                f"Security rule name {rule['name']} is used more than once in the security group.",
                target,
            )
        names[lowered] = rule["name"]
        props = rule["properties"]
        slot = (props["direction"], props["priority"])
        if slot in slots:
            raise bad_request(
                "SecurityRuleConflict",
                f"Security rule {rule['name']} conflicts with rule {slots[slot]}. Rules cannot have the same "
                "Priority and Direction. To learn more, see aka.ms/nsgrules.",
                target,
            )
        slots[slot] = rule["name"]
    if len(rules) > MAX_RULES:
        raise bad_request(
            "SecurityRulesLimitReached",
            f"The network security group has {len(rules)} security rules; at most {MAX_RULES} are allowed.",
            target,
        )


class NetworkSecurityGroups(ResourceType):
    namespace = NETWORK
    types = ("networkSecurityGroups",)
    long_running = True
    busy_status = 409

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "networkSecurityGroupName")
        props = properties(body)
        nsg_id = str(rid)
        rules = [
            normalise_rule(nsg_id, rule, f"properties.securityRules[{i}]")
            for i, rule in enumerate(require_list(props.get("securityRules"), "properties.securityRules"))
        ]
        check_conflicts(rules, "properties.securityRules")
        flush = props.get("flushConnection", False)
        if not isinstance(flush, bool):
            raise bad_request(
                "InvalidRequestFormat",
                "Property 'properties.flushConnection' must be a boolean.",
                "properties.flushConnection",
            )
        for rule in rules:
            rule["properties"]["provisioningState"] = "Succeeded"
        answer = {
            **kept_fields(body, "location", "tags"),
            "properties": {
                "flushConnection": flush,
                "securityRules": rules,
                "defaultSecurityRules": default_rules(nsg_id, None),
                "resourceGuid": resource_guid(existing),
            },
        }
        return keep_unmodelled(body, answer, computed=_COMPUTED)

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        refs = refs_of(call)
        key = body["id"].lower()
        nics = refs.sources("nics_by_nsg", key)
        subnets = refs.sources("subnets_by_nsg", key)
        answer = dict(body)
        props = dict(body.get("properties", {}))
        props["defaultSecurityRules"] = [
            {**rule, "etag": body.get("etag")} for rule in props.get("defaultSecurityRules", [])
        ]
        if nics:
            props["networkInterfaces"] = id_list(nics)
        if subnets:
            props["subnets"] = id_list(subnets)
        answer["properties"] = props
        return answer

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        refs = refs_of(call)
        users = refs.sources("nics_by_nsg", str(rid)) + refs.sources("subnets_by_nsg", str(rid))
        if users:
            raise bad_request(
                "InUseNetworkSecurityGroupCannotBeDeleted",
                f"Network security group {rid} cannot be deleted because it is in use by the following "
                f"resources: {', '.join(users)}. In order to delete the Network security group, remove the "
                "association with the resource(s).",
            )


class SecurityRules(ResourceType):
    namespace = NETWORK
    types = ("networkSecurityGroups", "securityRules")
    long_running = True
    busy_status = 429
    embedded_in = ("properties", "securityRules")
    tracked = False
    patch_supported = False

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        assert parent is not None and rid.parent is not None
        body["name"] = rid.name
        rule = normalise_rule(str(rid.parent), body, "securityRuleParameters")
        siblings = [
            r for r in parent["properties"].get("securityRules", []) if r["name"].lower() != rid.name.lower()
        ]
        check_conflicts([*siblings, rule], "securityRuleParameters")
        return rule


class DefaultSecurityRules(ResourceType):
    """Read-only: GET and list only."""

    namespace = NETWORK
    types = ("networkSecurityGroups", "defaultSecurityRules")
    embedded_in = ("properties", "defaultSecurityRules")
    tracked = False
    patch_supported = False

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        raise ArmError(405, "MethodNotAllowed", "Default security rules cannot be changed.")

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        raise ArmError(405, "MethodNotAllowed", "Default security rules cannot be deleted.")
