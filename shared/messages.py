"""Messages on the `jit-converge` queue (typed, JSON, base64 on the wire).

`grant`: a grant was created, revoked or superseded, or reached its end time: resolve its targets
(the first time) and converge each. `target`: converge one target. `policy`: a JIT policy was
written or deleted; enforcement resolves the targets of the VMs it named (before and after) and
converges them, so the HTTP request that changed the policy reads nothing from ARM. All are
level-triggered hints: converge reads the whole truth, so duplicates, reordering and loss change
nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class ConvergeGrant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["grant"] = "grant"
    grant_id: str = Field(min_length=1, max_length=128)


class ConvergeTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["target"] = "target"
    target: str = Field(min_length=1, max_length=1024, description="TargetRef.key")


class ConvergePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["policy"] = "policy"
    policy_id: str = Field(min_length=1, max_length=1024, description="the policy's resource id")
    # The VMs of the old and the new version: a VM dropped from the policy loses its Deny baseline.
    vm_ids: list[str] = Field(max_length=2000, description="VM resource ids, old and new version")


AnyConvergeMessage = ConvergeGrant | ConvergeTarget | ConvergePolicy
ConvergeMessage = Annotated[AnyConvergeMessage, Field(discriminator="kind")]
_converge_message: TypeAdapter[AnyConvergeMessage] = TypeAdapter(ConvergeMessage)


def parse_converge_message(text: str | bytes) -> AnyConvergeMessage:
    """Raises pydantic.ValidationError on anything that is not one of the messages."""
    return _converge_message.validate_json(text)


def dump_converge_message(message: AnyConvergeMessage) -> str:
    return message.model_dump_json()
