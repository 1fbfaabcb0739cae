"""`python -m localrig up` (what `make up` runs): JWT mode by default, ending with the two lines that
point the `portcullis` CLI at the stack, each on a line of its own; `PORTCULLIS_LOCAL_AUTH` picks the
mode and anything but jwt|headers is refused before anything starts. It seeds the sample estate
(unless `--no-seed` / PORTCULLIS_LOCAL_SEED=0) so that alice, signed in with a token from the local
issuer, sees the sample VMs through the policy list route the CLI's `vm list` reads, and eve sees none;
a second `up` over the same data directory finds it there and does not fail."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localrig.appclient import AppClient
from localrig.devusers import (
    ALICE,
    APP_AUDIENCE,
    BOB,
    DEV_PASSWORD,
    EVE,
    PUBLIC_CLIENT_ID,
    SAMPLE_RESOURCE_GROUP,
    SAMPLE_SUBSCRIPTION_ID,
    DevUser,
)
from localrig.estates.sample import Estate, sample_estate
from localrig.estates.snapshot import ports_of, wait_for
from localrig.oidc import TENANT_ID
from localrig.processes import PROJECT_ROOT, free_ports

CONFIGURE = re.compile(
    r"portcullis configure --endpoint (http://127\.0\.0\.1:\d+) --audience (\S+) "
    r"--authority (https://127\.0\.0\.1:\d+/\S+) --ca-bundle (/\S+)"
)


def run_up(
    data_dir: Path, mode: str | None, *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PORTCULLIS_LOCAL_AUTH", "PORTCULLIS_LOCAL_SEED")
    }
    if mode is not None:
        env["PORTCULLIS_LOCAL_AUTH"] = mode
    env.update(env_extra or {})
    host, emulator, issuer, *azurite = free_ports(6)
    argv = [sys.executable, "-m", "localrig", "up", "--data-dir", str(data_dir), *args]
    argv += ["--host-port", str(host), "--emulator-port", str(emulator)]
    argv += ["--issuer-port", str(issuer), "--azurite-ports", ",".join(map(str, azurite))]
    return subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def read_until_up(process: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Local stack is up"):
            return lines
    errors = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"the stack did not come up: {lines}\n{errors}")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def assert_cli_lines(lines: list[str], data_dir: Path) -> None:
    """JWT mode, and the two CLI lines, each on a line of its own, the login line right after."""
    assert any("sign-in: jwt" in line for line in lines)
    configure = [line for line in lines if line.startswith("portcullis configure ")]
    assert len(configure) == 1, lines
    match = CONFIGURE.fullmatch(configure[0])
    assert match, configure[0]
    assert match.group(2) == APP_AUDIENCE
    assert match.group(3).endswith(f"/{TENANT_ID}")
    ca = Path(match.group(4))
    assert ca.is_absolute() and ca.is_file() and ca == (data_dir / "emulator" / "ca.pem").resolve()
    assert "portcullis login --dev-user alice" in lines
    assert lines.index("portcullis login --dev-user alice") == lines.index(configure[0]) + 1
    # The self-service web page's URL, on the app's host.
    assert f"The web page: {match.group(1)}/api/ui/" in lines


def test_headers_mode_prints_no_cli_lines_and_no_seed_seeds_nothing(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", "headers", "--no-seed")
    try:
        lines = read_until_up(process)
    finally:
        stop(process)
    assert any("sign-in: headers" in line for line in lines)
    assert any("WEBSITE_AUTH_ENABLED=true" in line for line in lines)
    assert not any(line.startswith("portcullis ") for line in lines)
    assert not any(line.startswith("Sample") for line in lines)
    state = tmp_path / "rig" / "emulator" / "state.json"
    assert not state.exists() or SAMPLE_SUBSCRIPTION_ID not in state.read_text(encoding="utf-8")


def sign_in(configure_line: str, user: DevUser) -> tuple[str, dict[str, str]]:
    """(the app's endpoint, headers carrying `user`'s token) as the CLI gets them from the lines `up`
    printed: the issuer's discovery document names its token endpoint; the password grant signs in."""
    match = CONFIGURE.fullmatch(configure_line)
    assert match, configure_line
    endpoint, audience, authority, ca_bundle = match.groups()
    context = ssl.create_default_context(cafile=ca_bundle)
    with urllib.request.urlopen(
        f"{authority}/v2.0/.well-known/openid-configuration", context=context
    ) as answer:
        token_endpoint = json.load(answer)["token_endpoint"]
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": PUBLIC_CLIENT_ID,
            "username": user.username,
            "password": DEV_PASSWORD,
            "scope": f"{audience}/.default",
        }
    ).encode()
    request = urllib.request.Request(token_endpoint, data=form, method="POST")
    with urllib.request.urlopen(request, context=context) as answer:
        token = json.load(answer)["access_token"]
    return endpoint, {"Authorization": f"Bearer {token}"}


def listed_vms(configure_line: str, user: DevUser) -> list[str]:
    """The VM ids in the sample subscription's JIT policies that `user` may read (the list route
    `portcullis vm list` reads)."""
    endpoint, headers = sign_in(configure_line, user)
    url = (
        f"{endpoint}/api/subscriptions/{SAMPLE_SUBSCRIPTION_ID}/providers/Microsoft.Security"
        "/jitNetworkAccessPolicies?api-version=2020-01-01"
    )
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
        assert answer.status == 200
        body: dict[str, Any] = json.load(answer)
    return sorted(
        vm["id"].lower() for policy in body["value"] for vm in policy["properties"]["virtualMachines"]
    )


def approval_round_trip(configure_line: str, estate: Estate) -> None:
    """The seeded approval on vm-db, as a newcomer tries it: alice's request waits (Pending), bob's
    inbox lists it, bob approves, it opens (Initiated); alice revokes it so nothing stays open."""
    endpoint = CONFIGURE.fullmatch(configure_line).group(1)  # type: ignore[union-attr]
    alice, bob = (
        AppClient(f"{endpoint}/api", user, lambda u: sign_in(configure_line, u)[1]) for user in (ALICE, BOB)
    )
    answer = alice.initiate(
        estate, {estate.vm_db: [(22, "203.0.113.7")]}, datetime.now(UTC) + timedelta(minutes=5)
    )
    request_id = answer["requestId"]
    assert [p["status"] for p in ports_of(answer)] == ["Pending"], answer
    assert [r["requestId"] for r in alice.ok("GET", "/requests?status=Pending&approver=me")["value"]] == []
    waiting = bob.ok("GET", "/requests?status=Pending&approver=me")["value"]
    assert [r["requestId"] for r in waiting] == [request_id]
    bob.ok("POST", f"/requests/{request_id}/approve", {"comment": "seeded approval works"})
    wait_for(
        lambda: [p["status"] for p in ports_of(alice.request_status(request_id))] == ["Initiated"],
        30,
        "bob's approval to open vm-db",
    )
    approval = alice.request_status(request_id)["approval"]
    assert approval["status"] == "Approved"
    assert [d["objectId"] for d in approval["decisions"]] == [BOB.object_id]
    alice.ok("DELETE", f"/requests/{request_id}")
    wait_for(
        lambda: all(p["status"] != "Initiated" for p in ports_of(alice.request_status(request_id))),
        30,
        "the revoke",
    )


def seed_line(lines: list[str]) -> str:
    found = [line for line in lines if line.startswith("Sample estate ")]
    assert len(found) == 1, lines
    return found[0]


def test_up_seeds_the_sample_alice_sees_it_eve_not_a_second_up_keeps_it_cli_lines_last(
    tmp_path: Path,
) -> None:
    """JWT mode by default (one test, so the suite boots the stack only as often as it must)."""
    estate = sample_estate()
    sample_vms = sorted(estate.vm_id(name).lower() for name in estate.vm_names)
    runs = []
    for _ in range(2):  # the second `up` over the same data directory
        process = run_up(tmp_path / "rig", None)
        try:
            lines = read_until_up(process)
            configure = next(line for line in lines if line.startswith("portcullis configure "))
            seen = {user.name: listed_vms(configure, user) for user in (ALICE, EVE)}
            if not runs:
                approval_round_trip(configure, estate)
        finally:
            stop(process)
        assert process.returncode == 0, lines
        assert_cli_lines(lines, tmp_path / "rig")
        runs.append((lines, seen))
        assert seen == {"alice": sample_vms, "eve": []}
        assert "Sample VMs      vm-web, vm-db, vm-app, vm-ops" in "\n".join(lines)
        assert "vm-db needs bob's approval)" in "\n".join(lines)
        # The sample is said before the two CLI lines, which stay last and adjacent.
        assert lines.index(seed_line(lines)) < lines.index(configure)
    first, second = seed_line(runs[0][0]), seed_line(runs[1][0])
    assert f"subscription {SAMPLE_SUBSCRIPTION_ID}, resource group {SAMPLE_RESOURCE_GROUP}" in first
    assert "(22 resources; policy written;" in first
    assert "(resources already there; policy already there;" in second
    for line in (first, second):
        seconds = float(re.search(r"; ([\d.]+) s\)$", line).group(1))  # type: ignore[union-attr]
        assert seconds < 15, line


def test_a_seed_switch_that_is_not_one_is_refused_before_anything_starts(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", None, env_extra={"PORTCULLIS_LOCAL_SEED": "maybe"})
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PORTCULLIS_LOCAL_SEED='maybe'" in stderr
    assert not (tmp_path / "rig").exists()


def test_an_unknown_mode_is_refused_before_anything_starts(tmp_path: Path) -> None:
    process = run_up(tmp_path / "rig", "easyauth")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PORTCULLIS_LOCAL_AUTH='easyauth'" in stderr and "jwt or headers" in stderr
    assert not (tmp_path / "rig").exists()
