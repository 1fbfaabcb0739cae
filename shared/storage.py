"""Table and queue clients for the app's storage account: a connection string locally (Azurite),
identity-based service URIs in Azure. Queue messages are base64 text, as Functions' queue trigger
expects by default."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import BinaryBase64DecodePolicy, QueueClient, TextBase64EncodePolicy

from shared.azure_clients import shared_transport
from shared.settings import Settings, StorageSettings, get_settings

# A queue message may stay invisible for at most 7 days.
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600


def _identity_credential(storage: StorageSettings) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=storage.managed_identity_client_id)


@lru_cache(maxsize=4)
def table_service(settings: Settings | None = None) -> TableServiceClient:
    storage = (settings or get_settings()).storage
    if storage.connection_string:
        return TableServiceClient.from_connection_string(
            storage.connection_string, transport=shared_transport()
        )
    assert storage.table_service_uri is not None  # settings guarantee one or the other
    return TableServiceClient(
        storage.table_service_uri, credential=_identity_credential(storage), transport=shared_transport()
    )


def table(name: str, settings: Settings | None = None) -> TableClient:
    """A table of ours (prefixed), created on first use."""
    settings = settings or get_settings()
    client = table_service(settings).get_table_client(f"{settings.table_prefix}{name}")
    _ensure_table(client)
    return client


_created_tables: set[str] = set()


def _ensure_table(client: TableClient) -> None:
    key = f"{client.url}/{client.table_name}"
    if key in _created_tables:
        return
    with contextlib.suppress(ResourceExistsError):
        client.create_table()
    _created_tables.add(key)


def queue(name: str, settings: Settings | None = None) -> QueueClient:
    """A queue client that writes base64 text, created on first use."""
    storage = (settings or get_settings()).storage
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
        "transport": shared_transport(),
    }
    if storage.connection_string:
        client = QueueClient.from_connection_string(storage.connection_string, name, **policies)
    else:
        assert storage.queue_service_uri is not None
        client = QueueClient(
            storage.queue_service_uri, name, credential=_identity_credential(storage), **policies
        )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def send(
    client: QueueClient, text: str, *, visible_at: datetime | None = None, now: datetime | None = None
) -> None:
    """Enqueue `text`; with `visible_at`, the message stays invisible until then (at most 7 days)."""
    delay = 0
    if visible_at is not None:
        seconds = (visible_at - (now or datetime.now(UTC))).total_seconds()
        delay = max(0, min(MAX_VISIBILITY_SECONDS, int(seconds + 0.999)))
    client.send_message(text, visibility_timeout=delay or None, time_to_live=-1)
