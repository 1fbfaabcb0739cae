"""Every setting the app reads, validated once at start-up.

A missing or invalid setting raises `SettingsError` naming the setting, so the Functions host fails to
start with a message an administrator can act on instead of failing on the first request.
The README's configuration table lists the same names; `tests/test_settings.py` keeps them in sync.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

AZURE_PUBLIC_ARM_ENDPOINT = "https://management.azure.com"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


class ArmCredentialKind(StrEnum):
    # DefaultAzureCredential: managed identity in Azure, az login / env vars on a workstation.
    DEFAULT = "default"
    # A fixed bearer token, accepted only by the local ARM emulator.
    STATIC_TOKEN = "static-token"  # noqa: S105 - a mode name, not a secret


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.first <= value <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class StorageSettings:
    """One storage account for the Functions runtime, queues and tables.

    Locally a connection string (`AzureWebJobsStorage`); in Azure identity-based service URIs
    (`AzureWebJobsStorage__queueServiceUri` and friends), as the Functions runtime itself reads them.
    """

    connection_string: str | None
    queue_service_uri: str | None
    table_service_uri: str | None
    blob_service_uri: str | None
    managed_identity_client_id: str | None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    arm_endpoint: str
    arm_ca_bundle: Path | None
    arm_credential: ArmCredentialKind
    arm_polling_interval_seconds: float
    requests_queue: str
    converge_queue: str
    table_prefix: str
    easy_auth_enabled: bool
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_jwks_uri: str | None
    jwt_ca_bundle: Path | None
    rbac_cache_seconds: int
    max_vms_per_request: int
    max_ports_per_request: int
    max_vms_per_policy: int
    max_body_bytes: int
    nsg_allow_priorities: PortRange
    nsg_deny_priorities: PortRange
    firewall_nat_collection_priority: int
    firewall_policy_rule_collection_group_priority: int
    mapped_ports: PortRange
    converge_lease_seconds: int
    # Differing targets a reconcile pass converges at once (ARM writes are 10/s per subscription).
    reconcile_concurrency: int
    # Proxies (Front Door, API Management) between the caller and the platform's front end: each one
    # appends an X-Forwarded-For entry, so the caller is that many entries left of the last.
    trusted_proxy_hops: int
    # May whoever writes to the requests queue assert the requester's group memberships (groupIds)?
    queue_trusts_group_claims: bool
    # Queue senders (their `priorApproval.sender` names) whose message may carry an approval already
    # given in their own system (a ticketing system's change approval); empty: none may.
    trusted_approval_senders: tuple[str, ...]
    # Notifications (shared/notify/): the queue every event goes through, one message per channel.
    events_queue: str
    webhook_urls: tuple[str, ...]
    # `whsec_` + base64 (Standard Webhooks); required when webhook_urls is not empty.
    webhook_secret: str | None
    eventgrid_topic_endpoint: str | None
    # Deliveries per event and channel before the message goes to `<events queue>-poison`.
    events_max_attempts: int
    # The pause before the second delivery; it doubles for each later one (capped at an hour).
    events_retry_seconds: int

    @property
    def notifications_enabled(self) -> bool:
        return bool(self.webhook_urls or self.eventgrid_topic_endpoint)


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _required(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = _text(env, name, default)
    if value is None:
        raise SettingsError(f"setting {name} is required but not set")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"setting {name}={value} is outside {low}-{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"setting {name}={value} is outside {low}-{high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise SettingsError(f"setting {name}={raw!r} must be true or false")


def _range(env: Mapping[str, str], name: str, default: str, low: int, high: int) -> PortRange:
    raw = _text(env, name, default) or default
    first_text, sep, last_text = raw.partition("-")
    try:
        first, last = int(first_text), int(last_text)
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} must look like FIRST-LAST") from None
    if not sep or not low <= first <= last <= high:
        raise SettingsError(
            f"setting {name}={raw!r} must be FIRST-LAST with {low} <= FIRST <= LAST <= {high}"
        )
    return PortRange(first, last)


def _storage(env: Mapping[str, str]) -> StorageSettings:
    connection_string = _text(env, "AzureWebJobsStorage")
    queue_uri = _text(env, "AzureWebJobsStorage__queueServiceUri")
    table_uri = _text(env, "AzureWebJobsStorage__tableServiceUri")
    blob_uri = _text(env, "AzureWebJobsStorage__blobServiceUri")
    account = _text(env, "AzureWebJobsStorage__accountName")
    if account:
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
        blob_uri = blob_uri or f"https://{account}.blob.core.windows.net"
    if connection_string is None and (queue_uri is None or table_uri is None):
        raise SettingsError(
            "storage is not configured: set AzureWebJobsStorage (a connection string) or "
            "AzureWebJobsStorage__accountName (identity-based, as in Azure)"
        )
    return StorageSettings(
        connection_string=connection_string,
        queue_service_uri=queue_uri,
        table_service_uri=table_uri,
        blob_service_uri=blob_uri,
        managed_identity_client_id=_text(env, "AzureWebJobsStorage__clientId"),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    arm_endpoint = _required(env, "PORTCULLIS_ARM_ENDPOINT", AZURE_PUBLIC_ARM_ENDPOINT).rstrip("/")
    if not arm_endpoint.startswith("https://"):
        raise SettingsError(f"setting PORTCULLIS_ARM_ENDPOINT={arm_endpoint!r} must be https://")
    ca_bundle_text = _text(env, "PORTCULLIS_ARM_CA_BUNDLE")
    ca_bundle = Path(ca_bundle_text) if ca_bundle_text else None
    if ca_bundle is not None and not ca_bundle.is_file():
        raise SettingsError(f"setting PORTCULLIS_ARM_CA_BUNDLE={ca_bundle} is not a readable file")
    jwt_ca_bundle_text = _text(env, "PORTCULLIS_JWT_CA_BUNDLE")
    jwt_ca_bundle = Path(jwt_ca_bundle_text) if jwt_ca_bundle_text else None
    if jwt_ca_bundle is not None and not jwt_ca_bundle.is_file():
        raise SettingsError(f"setting PORTCULLIS_JWT_CA_BUNDLE={jwt_ca_bundle} is not a readable file")
    credential_text = _required(env, "PORTCULLIS_ARM_CREDENTIAL", ArmCredentialKind.DEFAULT)
    try:
        credential = ArmCredentialKind(credential_text)
    except ValueError:
        choices = ", ".join(kind.value for kind in ArmCredentialKind)
        raise SettingsError(
            f"setting PORTCULLIS_ARM_CREDENTIAL={credential_text!r} must be one of {choices}"
        ) from None
    if credential is ArmCredentialKind.STATIC_TOKEN and arm_endpoint == AZURE_PUBLIC_ARM_ENDPOINT:
        raise SettingsError(
            "setting PORTCULLIS_ARM_CREDENTIAL=static-token only works against the local emulator; "
            "set PORTCULLIS_ARM_ENDPOINT to it or use 'default'"
        )
    allow = _range(env, "PORTCULLIS_NSG_ALLOW_PRIORITIES", "3000-3499", 100, 4096)
    deny = _range(env, "PORTCULLIS_NSG_DENY_PRIORITIES", "3500-3999", 100, 4096)
    if allow.last >= deny.first:
        raise SettingsError(
            "settings PORTCULLIS_NSG_ALLOW_PRIORITIES and PORTCULLIS_NSG_DENY_PRIORITIES: the allow "
            f"band ({allow}) must lie entirely before (numerically below) the deny band ({deny})"
        )
    webhook_urls, webhook_secret = _webhooks(env)
    return Settings(
        storage=_storage(env),
        arm_endpoint=arm_endpoint,
        arm_ca_bundle=ca_bundle,
        arm_credential=credential,
        arm_polling_interval_seconds=_float(env, "PORTCULLIS_ARM_POLLING_INTERVAL", 5.0, 0.0, 60.0),
        requests_queue=_required(env, "PORTCULLIS_REQUESTS_QUEUE", "jit-requests"),
        converge_queue=_required(env, "PORTCULLIS_CONVERGE_QUEUE", "jit-converge"),
        table_prefix=_required(env, "PORTCULLIS_TABLE_PREFIX", "portcullis"),
        easy_auth_enabled=_bool(env, "WEBSITE_AUTH_ENABLED", False),
        jwt_issuer=_text(env, "PORTCULLIS_JWT_ISSUER"),
        jwt_audience=_text(env, "PORTCULLIS_JWT_AUDIENCE"),
        jwt_jwks_uri=_text(env, "PORTCULLIS_JWT_JWKS_URI"),
        jwt_ca_bundle=jwt_ca_bundle,
        rbac_cache_seconds=_int(env, "PORTCULLIS_RBAC_CACHE_SECONDS", 60, 0, 3600),
        max_vms_per_request=_int(env, "PORTCULLIS_MAX_VMS_PER_REQUEST", 10, 1, 100),
        max_ports_per_request=_int(env, "PORTCULLIS_MAX_PORTS_PER_REQUEST", 10, 1, 100),
        max_vms_per_policy=_int(env, "PORTCULLIS_MAX_VMS_PER_POLICY", 500, 1, 5000),
        max_body_bytes=_int(env, "PORTCULLIS_MAX_BODY_BYTES", 65536, 1024, 4 * 1024 * 1024),
        nsg_allow_priorities=allow,
        nsg_deny_priorities=deny,
        firewall_nat_collection_priority=_int(
            env, "PORTCULLIS_FIREWALL_NAT_COLLECTION_PRIORITY", 100, 100, 65000
        ),
        firewall_policy_rule_collection_group_priority=_int(
            env, "PORTCULLIS_FIREWALL_POLICY_RCG_PRIORITY", 100, 100, 65000
        ),
        mapped_ports=_range(env, "PORTCULLIS_MAPPED_PORTS", "50000-50999", 1, 63999),
        converge_lease_seconds=_int(env, "PORTCULLIS_CONVERGE_LEASE_SECONDS", 30, 15, 3600),
        reconcile_concurrency=_int(env, "PORTCULLIS_RECONCILE_CONCURRENCY", 4, 1, 32),
        trusted_proxy_hops=_int(env, "PORTCULLIS_TRUSTED_PROXY_HOPS", 0, 0, 10),
        queue_trusts_group_claims=_bool(env, "PORTCULLIS_QUEUE_TRUSTS_GROUP_CLAIMS", False),
        trusted_approval_senders=_senders(env, "PORTCULLIS_TRUSTED_APPROVAL_SENDERS"),
        events_queue=_required(env, "PORTCULLIS_EVENTS_QUEUE", "jit-events"),
        webhook_urls=webhook_urls,
        webhook_secret=webhook_secret,
        eventgrid_topic_endpoint=(
            _endpoint("PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT", topic)
            if (topic := _text(env, "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT"))
            else None
        ),
        events_max_attempts=_int(env, "PORTCULLIS_EVENTS_MAX_ATTEMPTS", 8, 1, 20),
        events_retry_seconds=_int(env, "PORTCULLIS_EVENTS_RETRY_SECONDS", 30, 1, 3600),
    )


_LOOPBACK_HTTP = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/")
MAX_WEBHOOKS = 10


_SENDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _senders(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated sender names (letters, digits, `.`, `_`, `-`; at most 64 each, 20 in all)."""
    text = _text(env, name) or ""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for sender in names:
        if not _SENDER.match(sender):
            raise SettingsError(
                f"{name}: {sender[:80]!r} is not a sender name (letters, digits, '.', '_', '-')"
            )
    if len(names) > 20:
        raise SettingsError(f"{name}: at most 20 senders")
    return names


def _endpoint(name: str, url: str) -> str:
    """An https URL (plain http only on the loopback interface: the local stack's sink)."""
    if not (url.startswith("https://") or url.startswith(_LOOPBACK_HTTP)):
        raise SettingsError(f"setting {name}: {url!r} must be an https:// URL")
    return url


def _webhooks(env: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    from shared.notify.signing import WebhookSecretError, secret_key

    raw = _text(env, "PORTCULLIS_WEBHOOK_URLS") or ""
    urls = tuple(
        dict.fromkeys(_endpoint("PORTCULLIS_WEBHOOK_URLS", u.strip()) for u in raw.split(",") if u.strip())
    )
    if len(urls) > MAX_WEBHOOKS:
        raise SettingsError(f"setting PORTCULLIS_WEBHOOK_URLS lists {len(urls)} URLs; at most {MAX_WEBHOOKS}")
    secret = _text(env, "PORTCULLIS_WEBHOOK_SECRET")
    if urls and secret is None:
        raise SettingsError(
            "setting PORTCULLIS_WEBHOOK_SECRET is required when PORTCULLIS_WEBHOOK_URLS is set"
        )
    if secret is not None:
        try:
            secret_key(secret)
        except WebhookSecretError as error:
            raise SettingsError(f"setting PORTCULLIS_WEBHOOK_SECRET {error}") from None
    return urls, secret


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
