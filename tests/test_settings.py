"""Settings are validated once and name the setting at fault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.settings import ArmCredentialKind, SettingsError, load_settings

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_defaults_are_sane() -> None:
    settings = load_settings(BASE)
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.arm_credential is ArmCredentialKind.DEFAULT
    assert settings.requests_queue == "jit-requests"
    assert settings.converge_queue == "jit-converge"
    assert settings.nsg_allow_priorities.last < settings.nsg_deny_priorities.first
    assert not settings.easy_auth_enabled


def test_missing_storage_names_the_setting() -> None:
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        load_settings({})


def test_identity_based_storage_derives_service_uris() -> None:
    settings = load_settings({"AzureWebJobsStorage__accountName": "acct"})
    assert settings.storage.connection_string is None
    assert settings.storage.queue_service_uri == "https://acct.queue.core.windows.net"
    assert settings.storage.table_service_uri == "https://acct.table.core.windows.net"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORTCULLIS_ARM_ENDPOINT", "http://insecure"),
        ("PORTCULLIS_ARM_CREDENTIAL", "password"),
        ("PORTCULLIS_ARM_CA_BUNDLE", "/no/such/file.pem"),
        ("PORTCULLIS_JWT_CA_BUNDLE", "/no/such/file.pem"),
        ("PORTCULLIS_MAPPED_PORTS", "1-70000"),
        ("PORTCULLIS_MAPPED_PORTS", "banana"),
        ("PORTCULLIS_RBAC_CACHE_SECONDS", "-1"),
        ("PORTCULLIS_ARM_POLLING_INTERVAL", "soon"),
        ("WEBSITE_AUTH_ENABLED", "maybe"),
        ("PORTCULLIS_NSG_ALLOW_PRIORITIES", "3900-4000"),
        ("PORTCULLIS_TRUSTED_APPROVAL_SENDERS", "changebot, bad name"),
        ("PORTCULLIS_TRUSTED_APPROVAL_SENDERS", ",".join(f"s{n}" for n in range(21))),
    ],
)
def test_invalid_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: value})


def test_trusted_approval_senders_are_none_by_default_and_a_list_when_set() -> None:
    assert load_settings(BASE).trusted_approval_senders == ()
    settings = load_settings({**BASE, "PORTCULLIS_TRUSTED_APPROVAL_SENDERS": " changebot , servicenow-prod "})
    assert settings.trusted_approval_senders == ("changebot", "servicenow-prod")


def test_static_token_refused_against_real_azure() -> None:
    with pytest.raises(SettingsError, match="PORTCULLIS_ARM_CREDENTIAL"):
        load_settings({**BASE, "PORTCULLIS_ARM_CREDENTIAL": "static-token"})


def test_readme_documents_every_setting() -> None:
    source = (Path(__file__).parent.parent / "shared" / "settings.py").read_text()
    names = set(re.findall(r'"((?:PORTCULLIS|WEBSITE|AzureWebJobsStorage)[A-Za-z_]*)"', source))
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"README configuration table lacks: {missing}"


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_notifications_are_off_by_default_and_on_with_a_channel() -> None:
    settings = load_settings(BASE)
    assert settings.events_queue == "jit-events"
    assert not settings.notifications_enabled and settings.webhook_urls == ()
    hooked = load_settings(
        {
            **BASE,
            "PORTCULLIS_WEBHOOK_URLS": " https://a.example/hook , https://b.example/x?sig=1,https://a.example/hook",
            "PORTCULLIS_WEBHOOK_SECRET": SECRET,
        }
    )
    assert hooked.webhook_urls == ("https://a.example/hook", "https://b.example/x?sig=1")
    assert hooked.notifications_enabled
    grid = load_settings(
        {
            **BASE,
            "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT": "https://t.westeurope-1.eventgrid.azure.net/api/events",
        }
    )
    assert grid.notifications_enabled and grid.webhook_urls == ()


@pytest.mark.parametrize(
    ("env", "name", "reason"),
    [
        ({"PORTCULLIS_WEBHOOK_URLS": "https://a.example/h"}, "PORTCULLIS_WEBHOOK_SECRET", "required"),
        (
            {"PORTCULLIS_WEBHOOK_URLS": "http://a.example/h", "PORTCULLIS_WEBHOOK_SECRET": SECRET},
            "PORTCULLIS_WEBHOOK_URLS",
            "https",
        ),
        ({"PORTCULLIS_WEBHOOK_SECRET": "secret"}, "PORTCULLIS_WEBHOOK_SECRET", "whsec_"),
        (
            {"PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT": "http://t.example/api/events"},
            "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT",
            "https",
        ),
        ({"PORTCULLIS_EVENTS_MAX_ATTEMPTS": "0"}, "PORTCULLIS_EVENTS_MAX_ATTEMPTS", "outside"),
        ({"PORTCULLIS_EVENTS_RETRY_SECONDS": "0"}, "PORTCULLIS_EVENTS_RETRY_SECONDS", "outside"),
    ],
)
def test_bad_notification_settings_name_the_setting(env: dict[str, str], name: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}.*{reason}"):
        load_settings({**BASE, **env})


def test_plain_http_endpoints_only_on_loopback() -> None:
    settings = load_settings(
        {**BASE, "PORTCULLIS_WEBHOOK_URLS": "http://127.0.0.1:9/hooks/x", "PORTCULLIS_WEBHOOK_SECRET": SECRET}
    )
    assert settings.webhook_urls == ("http://127.0.0.1:9/hooks/x",)
    with pytest.raises(SettingsError, match="PORTCULLIS_WEBHOOK_URLS"):
        load_settings(
            {
                **BASE,
                "PORTCULLIS_WEBHOOK_URLS": "http://127.0.0.1.evil.example/",
                "PORTCULLIS_WEBHOOK_SECRET": SECRET,
            }
        )
