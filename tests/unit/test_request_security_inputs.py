"""Issue 15, request side, the pure parts: who the caller is (Entra ID only, GUID object ids), where
they call from (trusted proxy hops), and which ids and bodies are refused before anything uses them."""

from __future__ import annotations

import base64
import json

import pytest

from shared.defender import check_json_depth
from shared.grants import request_id_for_ticket
from shared.identity import AuthenticationError, Authenticator, caller_address, easy_auth_header
from shared.model import DomainError, VmRef
from shared.settings import SettingsError, load_settings

USER = "3b0e6c1d-2f4a-4e8b-9c7d-6a5b4c3d2e1f"
SUB = "00000000-0000-0000-0000-0000000000a1"
VM = f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/vm-web"
EASY_AUTH = Authenticator(
    load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "WEBSITE_AUTH_ENABLED": "true"})
)


def principal_headers(document: dict, principal_id: str | None = None) -> dict[str, str]:
    headers = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}
    if principal_id is not None:
        headers["X-MS-CLIENT-PRINCIPAL-ID"] = principal_id
    return headers


# ---- item 16: Easy Auth principals must come from Entra ID ----


@pytest.mark.parametrize("provider", ["google", "github", "facebook", None])
def test_easy_auth_refuses_other_identity_providers_even_with_a_principal_id_header(provider) -> None:
    document = {"claims": [{"typ": "name", "val": "someone"}], **({"auth_typ": provider} if provider else {})}
    with pytest.raises(AuthenticationError, match="Entra ID"):
        EASY_AUTH.authenticate(principal_headers(document, principal_id=USER))


def test_easy_auth_accepts_an_entra_id_principal() -> None:
    principal = EASY_AUTH.authenticate(easy_auth_header(USER, "a@contoso.com"))
    assert principal.object_id == USER


# ---- item 11: malformed principals are a 401 before they reach RBAC, the audit or storage ----


@pytest.mark.parametrize("object_id", ["a" * 40000, "not-a-guid", "", f"{USER}\n", f"{USER}/../x"])
def test_a_malformed_object_id_is_refused_as_unauthenticated(object_id: str) -> None:
    with pytest.raises(AuthenticationError):
        EASY_AUTH.authenticate(easy_auth_header(object_id, "x@contoso.com"))


def test_non_guid_groups_are_dropped_and_too_many_groups_refused() -> None:
    group = "7c6d5e4f-3a2b-4c1d-8e9f-0a1b2c3d4e5f"
    principal = EASY_AUTH.authenticate(easy_auth_header(USER, "a@b", (group, "x" * 5000)))
    assert principal.group_ids == {group}
    many = tuple(f"00000000-0000-4000-8000-{n:012d}" for n in range(201))
    with pytest.raises(AuthenticationError, match="200"):
        EASY_AUTH.authenticate(easy_auth_header(USER, "a@b", many))


# ---- item 17: the number of trusted proxy hops picks the caller's entry ----


def test_trusted_proxy_hops_pick_the_entry_before_the_proxies() -> None:
    headers = {"X-Forwarded-For": "10.9.9.9, 203.0.113.9, 198.51.100.250:443"}
    assert caller_address(headers) == "198.51.100.250"  # default: as today, the platform's entry
    assert caller_address(headers, 1) == "203.0.113.9"
    assert caller_address(headers, 2) == "10.9.9.9"
    assert caller_address(headers, 3) is None  # fewer entries than proxies: unknown, never a guess


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORTCULLIS_TRUSTED_PROXY_HOPS", "-1"),
        ("PORTCULLIS_TRUSTED_PROXY_HOPS", "many"),
        ("PORTCULLIS_QUEUE_TRUSTS_GROUP_CLAIMS", "perhaps"),
    ],
)
def test_new_security_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", name: value})


def test_security_settings_default_to_today_and_to_distrust() -> None:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert (settings.trusted_proxy_hops, settings.queue_trusts_group_claims) == (0, False)


# ---- item 8: ids follow Azure's naming rules ----


@pytest.mark.parametrize(
    "vm_id",
    [
        VM.replace("vm-web", "vm-web?api-version=1"),
        VM.replace("vm-web", "vm#1"),
        VM.replace("vm-web", "vm web"),
        VM.replace("vm-web", "vm%2F"),
        VM.replace("vm-web", "vm-"),
        VM.replace("vm-web", "_vm"),
        VM.replace("vm-web", "v" * 65),
        VM.replace(SUB, "sub1"),
        VM.replace("rg-a", "rg."),
        VM.replace("rg-a", "r" * 91),
        VM + "/extensions/x",
        VM.replace("vm-web", "vm-\u212a"),  # KELVIN SIGN: [A-Za-z] matches it under IGNORECASE
    ],
)
def test_a_vm_id_outside_azures_naming_rules_is_refused_naming_the_field(vm_id: str) -> None:
    with pytest.raises(DomainError) as raised:
        VmRef.parse(vm_id, "virtualMachines[0].id")
    assert raised.value.field == "virtualMachines[0].id"


@pytest.mark.parametrize("name", ["vm-web", "VM_01", "a", "web.prod-1", "v" * 64])
def test_valid_vm_names_still_parse(name: str) -> None:
    assert VmRef.parse(VM.replace("vm-web", name)).name == name
    shouted = VM.replace("vm-web", name).replace("/subscriptions/", "/SUBSCRIPTIONS/")
    assert VmRef.parse(shouted.replace("virtualMachines", "VIRTUALMACHINES")).name == name


def test_resource_group_names_may_use_unicode_letters_and_parentheses() -> None:
    assert VmRef.parse(VM.replace("rg-a", "rg-(prod)-ünïcode")).resource_group == "rg-(prod)-ünïcode"


# ---- item 7: depth is refused up front, without recursion ----


def test_json_deeper_than_the_limit_is_refused_naming_the_body() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = {"a": [deep]}
    with pytest.raises(DomainError) as raised:
        check_json_depth({"virtualMachines": [], "extra": deep})
    assert raised.value.field == "body"
    policy = {"properties": {"virtualMachines": [{"ports": [{"allowedSourceAddressPrefixes": ["*"]}]}]}}
    check_json_depth(policy)


# ---- item 9: ticket ids are opaque ----


def test_ticket_ids_are_case_and_space_sensitive() -> None:
    ids = {request_id_for_ticket(t) for t in ("RT-1", "rt-1", " RT-1", "RT-1 ")}
    assert len(ids) == 4
    assert request_id_for_ticket("RT-1") == request_id_for_ticket("RT-1")
