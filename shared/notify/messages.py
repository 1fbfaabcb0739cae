"""Messages on the events queue (`PORTCULLIS_EVENTS_QUEUE`, default `jit-events`): one per event and
channel, so a failing channel retries alone; `attempt` counts deliveries (the retry schedule and the
poison decision are ours, not the host's, so a webhook's backoff can grow without holding a queue
worker)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: str = Field(min_length=1, max_length=64, description="channels.py key")
    attempt: int = Field(ge=1, le=100)
    event: dict[str, Any] = Field(description="the CloudEvent, structured JSON")


def parse_event_delivery(text: str | bytes) -> EventDelivery:
    """Raises pydantic.ValidationError on anything else."""
    return EventDelivery.model_validate_json(text)
