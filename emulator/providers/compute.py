"""Microsoft.Compute: virtual machines, as far as JIT access needs them.

A VM is a long-running PUT/DELETE (Azure-AsyncOperation at `.../providers/Microsoft.Compute/
locations/{region}/operations/{id}`, as Compute answers), whose `networkProfile.networkInterfaces[]`
must name NICs that exist, in the VM's region, not attached to another VM. The NIC's `virtualMachine`
back-reference is filled by the network provider from the stored VMs. Nothing is booted: the VM is
the ARM resource only. Secrets (`osProfile.adminPassword`, `customData`) are accepted but, as in Azure,
never answered.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from emulator import ids
from emulator.errors import ArmError, bad_request, invalid_resource_reference
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call, Engine
    from emulator.ids import ResourceId

log = logging.getLogger("emulator.compute")

VM_TYPE = "Microsoft.Compute/virtualMachines"
NIC_TYPE = "Microsoft.Network/networkInterfaces"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]$|^[A-Za-z0-9_]$")
_WRITE_ONLY = (("osProfile", "adminPassword"), ("osProfile", "customData"))


def invalid_parameter(message: str, target: str) -> ArmError:
    """Compute's 400 for a field that breaks a rule."""
    return bad_request("InvalidParameter", message, target)


def _region(text: Any) -> str:
    return str(text or "").replace(" ", "").lower()


class VirtualMachines(ResourceType):
    namespace = "Microsoft.Compute"
    types = ("virtualMachines",)
    long_running = True
    etag_style = "strong"

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if not _NAME.match(rid.name):
            raise invalid_parameter(
                f"The virtual machine name '{rid.name}' is invalid: 1-64 letters, digits, '_', '.', '-', "
                "starting with a letter, digit or '_' and not ending with '.' or '-'.",
                "vmName",
            )
        if existing is not None and _region(existing.get("location")) != _region(body.get("location")):
            raise ArmError(
                409,
                "InvalidResourceLocation",
                f"The resource '{rid.name}' already exists in location '{existing.get('location')}' in "
                f"resource group '{rid.resource_group}'. A resource with the same name cannot be created in "
                f"location '{body.get('location')}'. Please select a new resource name.",
            )
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise invalid_parameter("Required parameter 'properties' is missing (null).", "properties")
        hardware = properties.get("hardwareProfile")
        if (
            not isinstance(hardware, dict)
            or not isinstance(hardware.get("vmSize"), str)
            or not hardware["vmSize"]
        ):
            raise invalid_parameter(
                "Required parameter 'hardwareProfile.vmSize' is missing (null).", "hardwareProfile.vmSize"
            )
        for section in ("storageProfile", "osProfile"):
            if section in properties and not isinstance(properties[section], dict):
                raise invalid_parameter(f"'{section}' must be an object.", section)
        self._check_network(call, rid, body, properties)
        for section, field_name in _WRITE_ONLY:
            if isinstance(properties.get(section), dict):
                properties[section].pop(field_name, None)
        old = existing.get("properties", {}) if existing else {}
        properties["vmId"] = old.get("vmId") or str(uuid.uuid4())
        moment = datetime.now(UTC)
        properties["timeCreated"] = old.get("timeCreated") or f"{moment:%Y-%m-%dT%H:%M:%S.%f}0+00:00"
        for read_only in ("instanceView", "provisioningState"):
            properties.pop(read_only, None)
        body.pop("resources", None)
        return body

    def _check_network(
        self, call: Call, rid: ResourceId, body: dict[str, Any], properties: dict[str, Any]
    ) -> None:
        network = properties.get("networkProfile")
        nics = network.get("networkInterfaces") if isinstance(network, dict) else None
        if not isinstance(nics, list) or not nics:
            raise invalid_parameter(
                "Required parameter 'networkProfile.networkInterfaces' is missing (null): a virtual machine "
                "needs at least one network interface.",
                "networkProfile.networkInterfaces",
            )
        primaries = 0
        seen: set[str] = set()
        vm_id = str(rid)
        for index, nic in enumerate(nics):
            target = f"networkProfile.networkInterfaces[{index}].id"
            given = nic.get("id") if isinstance(nic, dict) else None
            nic_rid = ids.parse(given) if isinstance(given, str) else None
            if nic_rid is None or nic_rid.type_key.lower() != NIC_TYPE.lower():
                raise invalid_parameter(
                    f"'{target}' is {given!r}, which is not a network interface id "
                    "('/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{name}').",
                    target,
                )
            nic_id = str(given)
            record = call.store.get(nic_id)
            if record is None or _region(record.body.get("location")) != _region(body.get("location")):
                raise invalid_resource_reference(nic_id, vm_id, target)
            if ids.key(nic_id) in seen:
                raise invalid_parameter(f"Network interface {nic_id} is listed twice.", target)
            seen.add(ids.key(nic_id))
            self._check_nic_free(call, nic_id, vm_id)
            nic_properties = nic.get("properties") or {}
            if not isinstance(nic_properties, dict):
                raise invalid_parameter(
                    f"'networkProfile.networkInterfaces[{index}].properties' must be an object.", target
                )
            primaries += 1 if nic_properties.get("primary") is True else 0
        if len(nics) > 1 and primaries != 1:
            raise invalid_parameter(
                "Virtual machine with multiple network interfaces must have exactly one network interface "
                "marked as primary ('properties.primary': true).",
                "networkProfile.networkInterfaces",
            )

    @staticmethod
    def _check_nic_free(call: Call, nic_id: str, vm_id: str) -> None:
        for other in call.store.list(VM_TYPE):
            if ids.key(other.id) == ids.key(vm_id):
                continue
            network = other.body.get("properties", {}).get("networkProfile", {})
            for attached in network.get("networkInterfaces", []):
                if ids.key(str(attached.get("id", ""))) == ids.key(nic_id):
                    raise ArmError(
                        400,
                        "NicInUse",
                        f"Network Interface {nic_id} is used by existing Virtual Machine {other.id}.",
                        target="networkProfile.networkInterfaces",
                    )

    def after_write(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        log.info("compute.vm_written id=%s", rid)


def register(engine: Engine) -> None:
    engine.add_type(VirtualMachines())
