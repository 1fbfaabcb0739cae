"""Where events go: generic webhooks (Standard Webhooks signatures) and an Azure Event Grid topic.

A channel is named by a stable key carried in each queue message (`webhook:<hash of the URL>`,
`eventgrid`), never by the URL itself: webhook URLs often hold credentials (Logic Apps' `sig=`), so
neither the queue nor the logs nor the audit trail carry them, only the host.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from shared.notify.signing import secret_key, signature_headers
from shared.observability import brief
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

WEBHOOK_TIMEOUT_SECONDS = 10
EVENTGRID_CHANNEL = "eventgrid"
# The CloudEvents HTTP binding, structured mode: the body is the whole event.
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


class DeliveryError(Exception):
    """The endpoint did not take the event (a non-2xx answer, a timeout, a refused connection)."""


class Channel(Protocol):
    key: str
    endpoint_host: str

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Raises DeliveryError when the endpoint did not take the event."""


def webhook_key(url: str) -> str:
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


class WebhookChannel:
    def __init__(self, url: str, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.key = webhook_key(url)
        self.endpoint_host = urlsplit(url).netloc
        self._url = url
        self._key = secret_key(secret)
        self._clock = clock
        self._session: Any = None

    def deliver(self, event: Mapping[str, Any]) -> None:
        import requests

        if self._session is None:
            self._session = requests.Session()
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": CLOUDEVENTS_CONTENT_TYPE,
            **signature_headers(self._key, str(event["id"]), int(self._clock()), body),
        }
        try:
            answer = self._session.post(
                self._url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False
            )
        except requests.RequestException as error:
            raise DeliveryError(brief(error)) from None
        if not 200 <= answer.status_code < 300:
            raise DeliveryError(f"HTTP {answer.status_code} from {self.endpoint_host}")


class EventGridChannel:
    """Publishes with azure-eventgrid's EventGridPublisherClient and the app's identity (Entra ID:
    the identity needs `EventGrid Data Sender` on the topic; no access keys)."""

    def __init__(self, endpoint: str, credential: TokenCredential) -> None:
        self.key = EVENTGRID_CHANNEL
        self.endpoint_host = urlsplit(endpoint).netloc
        self._endpoint = endpoint
        self._credential = credential
        self._client: Any = None

    def deliver(self, event: Mapping[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.core.messaging import CloudEvent
        from azure.eventgrid import EventGridPublisherClient

        if self._client is None:
            self._client = EventGridPublisherClient(self._endpoint, self._credential)
        cloud_event = CloudEvent(
            source=event["source"],
            type=event["type"],
            subject=event.get("subject"),
            id=event["id"],
            time=datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")),
            specversion=event["specversion"],
            datacontenttype=event.get("datacontenttype"),
            data=event.get("data"),
        )
        # Bearer tokens go over https only; settings allow http solely on loopback (the local sink).
        extra = {} if self._endpoint.startswith("https://") else {"enforce_https": False}
        try:
            self._client.send([cloud_event], **extra)
        except AzureError as error:
            raise DeliveryError(brief(error)) from None


def build_channels(settings: Settings, credential: Callable[[], TokenCredential]) -> dict[str, Channel]:
    """Every configured channel by key (one per webhook URL, plus Event Grid when set)."""
    channels: dict[str, Channel] = {}
    if settings.webhook_urls:
        assert settings.webhook_secret is not None  # settings require it with URLs
        for url in settings.webhook_urls:
            channel = WebhookChannel(url, settings.webhook_secret)
            channels[channel.key] = channel
    if settings.eventgrid_topic_endpoint:
        channels[EVENTGRID_CHANNEL] = EventGridChannel(settings.eventgrid_topic_endpoint, credential())
    return channels


def channel_keys(settings: Settings) -> list[str]:
    """The channel keys an event is enqueued for (without building any client)."""
    keys = [webhook_key(url) for url in settings.webhook_urls]
    if settings.eventgrid_topic_endpoint:
        keys.append(EVENTGRID_CHANNEL)
    return keys
