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
from emulator.engine import Response
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
    creating_state = "Creating"  # Compute answers a new VM `Creating`, an update `Updating`

    def __init__(self) -> None:
        super().__init__()
        for action, state in _POWER_ACTIONS.items():
            self.actions[action] = _power_action(state)

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        """`$expand=instanceView` (GET) and `statusOnly=true` (lists) add `properties.instanceView`."""
        expand = (call.query_value("$expand") or "").lower()
        status_only = (call.query_value("statusOnly") or "").lower() == "true"
        if "instanceview" not in expand and not status_only:
            return body
        answer = dict(body)
        answer["properties"] = {**body.get("properties", {}), "instanceView": instance_view(call, body)}
        return answer

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


# POST {vm}/{action} -> the power state it leaves the VM in (Compute's long-running actions).
_POWER_ACTIONS = {
    "start": "running",
    "restart": "running",
    "powerOff": "stopped",
    "deallocate": "deallocated",
}
_POWER_DISPLAY = {
    "running": "VM running",
    "stopped": "VM stopped",
    "deallocated": "VM deallocated",
    "starting": "VM starting",
}


def _power_states(call: Call) -> dict[str, str]:
    states: dict[str, str] = call.store.extra.setdefault("compute_power_states", {})
    return states


def _power_action(state: str) -> Any:
    def handler(call: Call, rid: ResourceId, record: Any) -> Any:
        _power_states(call)[ids.key(str(rid))] = state
        call.store.mark_dirty()
        return call.engine.start_action(call, call.engine.types[VM_TYPE.lower()], rid, None)

    return handler


def _time(body: dict[str, Any]) -> str:
    return str(
        body.get("properties", {}).get("timeCreated") or f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}+00:00"
    )


def instance_view(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """A VirtualMachineInstanceView as Compute answers it (VirtualMachine_Get_InstanceView example in
    azure-rest-api-specs, ComputeRP stable): provisioning state and power state statuses; a VM is
    `running` unless stopped/deallocated through its actions, `starting` while it is being created."""
    properties = body.get("properties", {})
    state = str(properties.get("provisioningState") or "Succeeded")
    power = _power_states(call).get(ids.key(body["id"]), "running")
    if state == "Creating":
        power = "starting"
    os_profile = properties.get("osProfile") or {}
    os_disk = (properties.get("storageProfile") or {}).get("osDisk") or {}
    view: dict[str, Any] = {
        "computerName": os_profile.get("computerName", body.get("name")),
        "hyperVGeneration": "V2",
        "vmAgent": {
            "vmAgentVersion": "2.13.1.1",
            "statuses": [
                {
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Ready" if power == "running" else "Not Ready",
                    "message": "GuestAgent is running and processing the extensions.",
                    "time": _time(body),
                }
            ],
        },
        "statuses": [
            {
                "code": f"ProvisioningState/{state.lower()}",
                "level": "Info" if state != "Failed" else "Error",
                "displayStatus": "Provisioning succeeded" if state == "Succeeded" else state,
                "time": _time(body),
            },
            {"code": f"PowerState/{power}", "level": "Info", "displayStatus": _POWER_DISPLAY[power]},
        ],
    }
    if os_disk.get("name"):
        view["disks"] = [
            {
                "name": os_disk["name"],
                "statuses": [
                    {
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                        "time": _time(body),
                    }
                ],
            }
        ]
    return view


def get_instance_view(call: Call, match: re.Match[str]) -> Response:
    rid = ids.parse(match.group("vm"))
    resource_type = call.engine.types[VM_TYPE.lower()]
    assert rid is not None
    record = call.engine.require(call, resource_type, rid)
    return Response(200, instance_view(call, record.body))


def register(engine: Engine) -> None:
    engine.add_type(VirtualMachines())
    engine.route(
        "GET",
        r"(?P<vm>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/virtualMachines/[^/]+)"
        r"/instanceView",
        get_instance_view,
    )
