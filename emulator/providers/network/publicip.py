"""Public IP addresses: a Static one gets its address when created, a Dynamic one once attached."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from emulator.errors import bad_request
from emulator.providers.network.common import (
    NETWORK,
    PIP_TYPE,
    check_name,
    kept_fields,
    one_of,
    properties,
    referenced_body,
    refs_of,
    require_object,
    resource_guid,
)
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId
    from emulator.store import Store

# Documentation ranges would be more honest, but clients validate "public" addresses; 20.x is Azure's.
_POOL_START = int(ipaddress.IPv4Address("20.50.0.4"))


def allocate_public_ip(store: Store) -> str:
    state = store.extra.setdefault("network", {})
    offset = int(state.get("next_public_ip", 0))
    state["next_public_ip"] = offset + 1
    store.mark_dirty()
    address = ipaddress.IPv4Address(_POOL_START + offset)
    if str(address).endswith((".0", ".255")):  # keep addresses that look like hosts
        return allocate_public_ip(store)
    return str(address)


class PublicIPAddresses(ResourceType):
    namespace = NETWORK
    types = ("publicIPAddresses",)
    long_running = True

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "publicIpAddressName")
        props = properties(body)
        # Without a sku, a Dynamic request means the Basic sku (which is what such requests got in Azure).
        implied = (
            "Basic" if str(props.get("publicIPAllocationMethod", "")).lower() == "dynamic" else "Standard"
        )
        sku = require_object(body.get("sku"), "sku") or {"name": implied, "tier": "Regional"}
        sku_name = one_of(sku.get("name", "Standard"), ("Basic", "Standard", "StandardV2"), "sku.name")
        sku_answer = {
            "name": sku_name,
            "tier": one_of(sku.get("tier", "Regional"), ("Regional", "Global"), "sku.tier"),
        }
        default_method = "Static" if sku_name != "Basic" else "Dynamic"
        method = one_of(
            props.get("publicIPAllocationMethod", default_method),
            ("Static", "Dynamic"),
            "properties.publicIPAllocationMethod",
        )
        if sku_name != "Basic" and method == "Dynamic":
            raise bad_request(
                "StandardSkuPublicIPAddressesMustBeStatic",
                "Standard sku publicIp must have AllocationMethod set to Static.",
                "properties.publicIPAllocationMethod",
            )
        version = one_of(
            props.get("publicIPAddressVersion", "IPv4"), ("IPv4", "IPv6"), "properties.publicIPAddressVersion"
        )
        idle = props.get("idleTimeoutInMinutes", 4)
        if isinstance(idle, bool) or not isinstance(idle, int) or not 4 <= idle <= 30:
            raise bad_request(
                "PublicIPIdleTimeoutIsOutOfRange",
                "idleTimeoutInMinutes must be 4-30.",
                "properties.idleTimeoutInMinutes",
            )
        old_props = (existing or {}).get("properties", {})
        address = old_props.get("ipAddress")
        if call.admin and isinstance(props.get("ipAddress"), str):  # seeds may pin an address
            try:
                address = str(ipaddress.ip_address(props["ipAddress"]))
            except ValueError:
                raise bad_request(
                    "InvalidRequestFormat", "ipAddress is not an IP address.", "properties.ipAddress"
                ) from None
        if address is None:
            address = allocate_public_ip(call.store)
        answer_props: dict[str, Any] = {
            "publicIPAllocationMethod": method,
            "publicIPAddressVersion": version,
            "idleTimeoutInMinutes": idle,
            "ipTags": props.get("ipTags") or [],
            "ipAddress": address,
            "resourceGuid": resource_guid(existing),
        }
        if props.get("dnsSettings"):
            answer_props["dnsSettings"] = props["dnsSettings"]
        return {
            **kept_fields(body, "location", "tags", "zones"),
            "sku": sku_answer,
            "properties": answer_props,
        }

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        props = dict(body.get("properties", {}))
        user = refs_of(call).first("ipconfig_by_public_ip", body["id"])
        if user:
            props["ipConfiguration"] = {"id": user}
        elif props.get("publicIPAllocationMethod") == "Dynamic":
            props.pop("ipAddress", None)  # a dynamic address exists only while attached
        return {**body, "properties": props}

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        user = refs_of(call).first("ipconfig_by_public_ip", str(rid))
        if user:
            raise bad_request(
                "PublicIPAddressCannotBeDeleted",
                f"Public IP address {rid} can not be deleted since it is still allocated to resource {user}. "
                "In order to delete the public IP, disassociate/detach the Public IP address "
                "from the resource.",
            )


def attach_public_ip(
    call: Call, value: Any, target: str, owner_id: str, *, required: bool = False
) -> dict[str, Any] | None:
    """The public IP an ip configuration of `owner_id` references (None if omitted); refused when an
    ip configuration of another resource already holds it."""
    pip = referenced_body(call.store, value, PIP_TYPE, target, required=required)
    if pip is None:
        return None
    holder = refs_of(call).first("ipconfig_by_public_ip", pip["id"])
    if holder and not holder.lower().startswith(owner_id.lower() + "/"):
        raise bad_request(
            "PublicIPAddressInUse", f"Resource {pip['id']} is already in use by {holder}.", target
        )
    return pip
