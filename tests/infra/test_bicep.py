"""infra/ parses, sets every setting the code reads, and agrees with the code on names and defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.events import EventId
from shared.settings import load_settings
from tests.infra import bicep

# Settings the code reads that the Bicep deliberately leaves unset, each with the reason; every
# reason is itself checked below, so the allow-list cannot hide a forgotten setting.
NOT_SET_IN_AZURE = {
    "AzureWebJobsStorage": "a connection string needs shared keys; Azure uses AzureWebJobsStorage__*",
    "PORTCULLIS_ARM_CA_BUNDLE": "only for the local emulator's self-signed CA",
    "PORTCULLIS_JWT_ISSUER": "only when Easy Auth is off; infra turns Easy Auth on",
    "PORTCULLIS_JWT_AUDIENCE": "only when Easy Auth is off; infra turns Easy Auth on",
    "PORTCULLIS_JWT_JWKS_URI": "only when Easy Auth is off; infra turns Easy Auth on",
    "PORTCULLIS_JWT_CA_BUNDLE": "only for the local OpenID issuer's certificate (the emulator's CA)",
    "WEBSITE_AUTH_ENABLED": "App Service sets it itself when authsettingsV2 platform.enabled is true",
}


@pytest.mark.parametrize("path", bicep.bicep_files(), ids=lambda p: str(p.relative_to(bicep.INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    # checkov skips a file it cannot parse and still exits 0: parse each one ourselves.
    parsed = bicep.parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def test_the_infra_has_the_expected_files() -> None:
    names = {str(p.relative_to(bicep.INFRA)) for p in bicep.bicep_files()}
    assert {"main.bicep", "modules/app.bicep", "modules/operator-role.bicep"} <= names
    assert (bicep.ROOT / "azure.yaml").is_file()
    for module in bicep.parse(bicep.MAIN)["modules"].values():
        assert module["type"] == "local", "registry modules need the network to build"
        assert (bicep.INFRA / module["detail"]["path"]).is_file()


def test_every_setting_the_code_reads_is_set_in_the_bicep() -> None:
    read = bicep.settings_read_by_code()
    assert "PORTCULLIS_ARM_ENDPOINT" in read and "APPLICATIONINSIGHTS_CONNECTION_STRING" in read
    configured = set(bicep.app_settings())
    missing = sorted(read - configured - set(NOT_SET_IN_AZURE))
    assert not missing, f"infra/modules/app.bicep app settings lack: {missing}"
    unknown = sorted(name for name in configured - read if name.startswith("PORTCULLIS_"))
    assert not unknown, f"app settings the code never reads (typo?): {unknown}"
    stale = sorted(set(NOT_SET_IN_AZURE) - read)
    assert not stale, f"allow-listed settings the code no longer reads: {stale}"


def test_the_reasons_for_unset_settings_hold() -> None:
    configured = set(bicep.app_settings())
    assert not configured & set(NOT_SET_IN_AZURE)
    auth = bicep.resource_properties(bicep.APP_MODULE, "authSettings")
    assert bicep.resources(bicep.APP_MODULE)["authSettings"]["config"]["name"] == "authsettingsV2"
    assert auth["platform"]["enabled"] is True
    assert auth["globalValidation"]["requireAuthentication"] is True
    assert auth["identityProviders"]["azureActiveDirectory"]["enabled"] is True
    settings = bicep.app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["PORTCULLIS_ARM_CREDENTIAL"] == "default"


def test_only_the_public_routes_skip_easy_auth() -> None:
    """Easy Auth lets through exactly what the route table calls public (a `{param}` segment is the
    `*` wildcard): nothing else reaches the code signed out, and the web page can load to sign in."""
    from shared.api.routes import ROUTES

    auth = bicep.resource_properties(bicep.APP_MODULE, "authSettings")
    public = {"/api/" + re.sub(r"\{[^}]+\}", "*", route.path) for route in ROUTES if route.public}
    assert "/api/ui/*" in public and "/api/health" in public
    assert set(auth["globalValidation"]["excludedPaths"]) == public
    assert auth["globalValidation"]["unauthenticatedClientAction"] == "Return401"


def test_storage_is_reached_only_with_identities() -> None:
    storage = bicep.resource_properties(bicep.APP_MODULE, "storage")
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    deployment = bicep.resource_properties(bicep.APP_MODULE, "functionApp")["functionAppConfig"]
    assert deployment["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert deployment["runtime"] == {"name": "python", "version": "3.11"}


def test_bicep_defaults_are_the_code_defaults() -> None:
    """With every parameter at its default, the app reads exactly the settings it would default to."""
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    from_bicep = {}
    for name, value in bicep.app_settings().items():
        default = bicep.resolve_setting_default(value)
        if name.startswith("PORTCULLIS_") and default is not None:
            from_bicep[name] = default
    assert len(from_bicep) >= 15, from_bicep
    assert load_settings({**base, **from_bicep}) == load_settings(base)


def test_storage_roles_are_the_narrow_data_roles() -> None:
    app_text = bicep.APP_MODULE.read_text()
    roles = {
        "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    }
    variables = bicep.parse(bicep.APP_MODULE)["variables"]
    for name, guid in roles.items():
        assert variables[name]["value"] == guid
    # No account-wide owner or contributor roles (Storage Account Contributor, Blob Data Owner, Owner).
    for broad in (
        "17d1049b-9a84-46fb-8f53-869881c3d3ab",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
    ):
        assert broad not in app_text


def test_tables_the_code_uses_are_declared() -> None:
    declared = set(bicep.parse(bicep.APP_MODULE)["variables"]["tableNames"]["value"])
    used: set[str] = set()
    for source in sorted((bicep.ROOT / "shared").rglob("*.py")):
        used |= set(re.findall(r"""\btable\(\s*["']([A-Za-z0-9]+)["']""", source.read_text()))
    assert used, "found no table(...) calls in shared/"
    assert used <= declared, (
        f"tables missing from infra/modules/app.bicep tableNames: {sorted(used - declared)}"
    )


def test_queues_include_the_app_queues_and_their_poison_queues() -> None:
    defaults = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert bicep.main_parameter_default("requestsQueueName") == defaults.requests_queue
    assert bicep.main_parameter_default("convergeQueueName") == defaults.converge_queue
    assert bicep.main_parameter_default("eventsQueueName") == defaults.events_queue
    queue_names = bicep.parse(bicep.APP_MODULE)["variables"]["queueNames"]["value"]
    assert {"requestsQueueName", "convergeQueueName", "eventsQueueName"} <= set(map(str, queue_names))
    assert sum("-poison" in str(name) for name in queue_names) == 3


def test_revoke_alert_matches_the_event_the_app_logs() -> None:
    variables = bicep.parse(bicep.APP_MODULE)["variables"]
    assert variables["revokeFailingEvent"]["value"] == EventId.REVOKE_FAILING
    alert = bicep.resource_properties(bicep.APP_MODULE, "revokeFailingAlert")
    assert alert["severity"] <= 1 and alert["enabled"] is True
    query = alert["criteria"]["allOf"][0]["query"]
    assert "${revokeFailingEvent}" in query and query.startswith("traces")


def test_role_assignments_use_the_custom_role_at_the_managed_scopes() -> None:
    modules = bicep.parse(bicep.MAIN)["modules"]
    loops = {
        "subscriptionAssignments": "managedSubscriptionIds",
        "resourceGroupAssignments": "managedResourceGroupIds",
    }
    for symbol, scopes in loops.items():
        looped = modules[symbol]["config"]
        assert looped["loop_type"]["detail"]["array_name"] == scopes
        params = looped["config"]["params"]
        assert "'operand_1': 'operatorRole'" in str(params["roleDefinitionId"])
        assert "identityPrincipalId" in str(params["principalId"])
    role = bicep.resource_properties(bicep.ROLE_MODULE, "operatorRole")
    permissions = role["permissions"][0]
    assert permissions["dataActions"] == [] and role["type"] == "CustomRole"
    assert not [a for a in bicep.role_actions() if "*" in a], "no wildcards in the custom role"
