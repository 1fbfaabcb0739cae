"""Messages on the `jit-converge` queue (typed, JSON, base64 on the wire).

`grant`: a grant was created, revoked or superseded, or reached its end time: resolve its targets
(the first time) and converge each. `target`: converge one target. Both are level-triggered hints:
converge reads the whole truth, so duplicates, reordering and loss change nothing.
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


ConvergeMessage = Annotated[ConvergeGrant | ConvergeTarget, Field(discriminator="kind")]
_converge_message: TypeAdapter[ConvergeGrant | ConvergeTarget] = TypeAdapter(ConvergeMessage)


def parse_converge_message(text: str | bytes) -> ConvergeGrant | ConvergeTarget:
    """Raises pydantic.ValidationError on anything that is not one of the two messages."""
    return _converge_message.validate_json(text)


def dump_converge_message(message: ConvergeGrant | ConvergeTarget) -> str:
    return message.model_dump_json()
