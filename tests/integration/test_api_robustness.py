"""Request-side edges found while fuzzing and reviewing: hostile bodies are 400s naming the body (not
500s), a grant is never recorded behind an answer that says nothing changed, and Azure's built-in
roles decide through the ARM emulator as they do in Azure."""

from __future__ import annotations

import json

import pytest
from azure.storage.queue import QueueClient

from shared.api import defender_routes, records
from shared.grants import TableGrantStore
from shared.model import VmRef
from shared.queue_intake import handle_queued_request
from tests.integration.jit_world import API_VERSION, Person, World

CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def initiate(world: World, person: Person, body: dict) -> tuple[int, dict]:
    status, answer, _ = world.call(
        defender_routes.initiate,
        "POST",
        world.policy_path() + "/initiate" + API_VERSION,
        person,
        body,
        world.policy_route(),
    )
    return status, answer


def grants_on_vm1(world: World) -> list:
    return TableGrantStore(world.services.settings).list_for_vm(
        VmRef.parse(world.vm_id("vm1")), open_only=False
    )


@pytest.mark.parametrize("handler", [defender_routes.put_policy, defender_routes.initiate])
def test_deeply_nested_json_is_a_400_naming_the_body(world: World, policy: None, handler) -> None:
    # Under the 64 KiB body limit, but deeper than the JSON parser recurses.
    raw = b"[" * 30000 + b"]" * 30000
    status, body, _ = world.call(
        handler, "PUT", world.policy_path() + API_VERSION, world.admin, raw=raw, route=world.policy_route()
    )
    assert status == 400, body
    assert body["error"]["code"] == "InvalidRequestContent" and body["error"]["target"] == "body"
    assert grants_on_vm1(world) == []


def test_deeply_nested_queue_message_is_poisoned_not_retried(world: World) -> None:
    outcome = handle_queued_request("[" * 20000 + "]" * 20000, world.services)
    assert not outcome.accepted
    assert "nested too deeply" in (outcome.reason or "")


def test_a_lost_hand_over_still_answers_the_recorded_request(world: World, policy: None) -> None:
    """The grant is written, then the converge queue is gone: the answer is the request (202), not a 503
    saying nothing changed while a grant stands that enforcement's reconcile will open."""
    settings = world.services.settings
    assert settings.storage.connection_string is not None
    QueueClient.from_connection_string(
        settings.storage.connection_string, settings.converge_queue
    ).delete_queue()

    status, body = initiate(world, world.alice, world.initiate_body())

    assert status == 202, body
    recorded = grants_on_vm1(world)
    assert [g.request_id for g in recorded] == [body["requestId"]]
    events = [e.event for e in world.services.audit.for_subject(body["requestId"])]
    assert "request.accepted" in events


def test_built_in_reader_reads_but_cannot_initiate_or_write(world: World, policy: None) -> None:
    reader = Person("0a1b2c3d-0000-4000-8000-00000000000a", "reader@contoso.com")
    world.assign(world.rg_scope, READER, reader.object_id)
    status, _, _ = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path() + API_VERSION,
        reader,
        route=world.policy_route(),
    )
    assert status == 200
    assert initiate(world, reader, world.initiate_body())[0] == 403
    status, _, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        reader,
        world.policy_body(),
        world.policy_route(),
    )
    assert status == 403
    assert grants_on_vm1(world) == []


def test_built_in_contributor_initiates_and_lists_grants(world: World, policy: None) -> None:
    contributor = Person("0a1b2c3d-0000-4000-8000-00000000000b", "contributor@contoso.com")
    world.assign(world.rg_scope, CONTRIBUTOR, contributor.object_id)
    status, body = initiate(world, contributor, world.initiate_body())
    assert status == 202, body
    status, listed, _ = world.call(
        records.list_grants, "GET", f"/grants?vm={world.vm_id('vm1')}", contributor
    )
    assert status == 200 and [g["requestId"] for g in listed["value"]] == [body["requestId"]]


def test_the_request_body_must_be_an_object_naming_the_body(world: World, policy: None) -> None:
    for body in ([], "text", 7, None):
        raw = json.dumps(body).encode()
        status, answer, _ = world.call(
            defender_routes.initiate,
            "POST",
            world.policy_path() + "/initiate" + API_VERSION,
            world.alice,
            raw=raw,
            route=world.policy_route(),
        )
        assert status == 400, (body, answer)
        assert answer["error"]["target"] == "body"
