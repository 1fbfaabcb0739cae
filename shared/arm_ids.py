"""ARM resource ids, read in one place: azure-mgmt-core's `parse_resource_id` (the SDK's own reading
of an id), with the few questions the app asks of one. Nothing else splits an id on "/".

The pure core (`shared/model.py`) keeps its own `ResourceId.subscription_id` so that it imports no
Azure SDK; everything outside it asks here.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.mgmt.core.tools import parse_resource_id


@dataclass(frozen=True)
class ArmId:
    """An id's parts: `names` is the resource's name then each child's (`vnet`, `subnet`), `types`
    their types (`virtualNetworks`, `subnets`)."""

    subscription_id: str
    resource_group: str | None
    namespace: str | None
    types: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, resource_id: str) -> ArmId:
        """Raises ValueError when `resource_id` is not inside a subscription."""
        parsed = parse_resource_id(resource_id.strip().rstrip("/"))
        # Every value is a string but `last_child_num` (an int).
        parts = {key: str(value) for key, value in parsed.items() if value is not None}
        if not parts.get("subscription"):
            raise ValueError(f"{resource_id[:300]!r} is not an ARM id inside a subscription")
        types: list[str] = []
        names: list[str] = []
        if parts.get("type") and parts.get("name"):
            types.append(parts["type"])
            names.append(parts["name"])
            for level in range(1, int(parts.get("last_child_num", "0")) + 1):
                types.append(parts[f"child_type_{level}"])
                names.append(parts[f"child_name_{level}"])
        return cls(
            subscription_id=parts["subscription"],
            resource_group=parts.get("resource_group"),
            namespace=parts.get("namespace"),
            types=tuple(types),
            names=tuple(names),
        )


def subscription_of(resource_id: str) -> str:
    """The subscription an id lies in; ValueError when it lies in none."""
    return ArmId.parse(resource_id).subscription_id


def parent_of(resource_id: str, child_type: str) -> str:
    """`.../{type}/{name}/{child_type}/{child}` -> `.../{type}/{name}`, spelled as given; ValueError
    when the id's last level is not a `child_type`."""
    parsed = ArmId.parse(resource_id)
    if len(parsed.types) < 2 or parsed.types[-1].lower() != child_type.lower():
        # ARM's child types are plural ("subnets"); the message names one ("not a subnet id").
        raise ValueError(f"{resource_id[:300]!r} is not a {child_type.removesuffix('s')} id")
    trimmed = resource_id.strip().rstrip("/")
    for _ in range(2):
        trimmed = trimmed.rsplit("/", 1)[0]
    return trimmed
