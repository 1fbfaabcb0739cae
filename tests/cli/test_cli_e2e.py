"""The real `portcullis` process (the console script `pip install -e ./cli` put in .venv/bin) against
the local stack in JWT mode: sign-in at the local OpenID issuer, vm list from the policies, requests
direct (NSG) and behind a classic firewall with the rules checked in the emulator through
azure-mgmt-network, reuse, revoke, exec's revoke on exit and on SIGTERM, refusals with the API's
message, and the exit codes. One stack and one estate for the module."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.network import NetworkManagementClient

from localrig.appclient import AppClient
from localrig.devusers import ALICE, EVE, DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import READER_ROLE, assign_role, grant_roles
from localrig.estates.sample import ESTATE_NSGS, Estate
from localrig.estates.seed import seed_sample
from localrig.estates.snapshot import our_denies, wait_for
from localrig.stack import Stack, start_stack

PORTCULLIS = Path(sys.executable).parent / "portcullis"
# This checkout's CLI source: the console script's editable install may be another checkout's (a
# worktree shares .venv), so every process gets cli/ first on PYTHONPATH.
CLI_SOURCE = Path(__file__).resolve().parents[2] / "cli"
pytestmark = pytest.mark.skipif(
    not PORTCULLIS.exists(), reason=f"{PORTCULLIS} is missing: `.venv/bin/pip install -e ./cli` (make venv)"
)
ALLOW = re.compile(r"^Portcullis-JIT-Allow-22-(.+)$")


@dataclass
class Rig:
    stack: Stack
    arm: EmulatorClient
    estate: Estate
    network: NetworkManagementClient
    home: Path

    def cli(
        self, user: str, *args: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`portcullis ARGS` as `user` (each user has a config directory of their own)."""
        done = subprocess.run(
            [str(PORTCULLIS), *args], env=self.env(user), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"portcullis {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done

    def env(self, user: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
        path = os.pathsep.join(filter(None, [str(CLI_SOURCE), env.get("PYTHONPATH")]))
        return {**env, "PYTHONPATH": path, "PORTCULLIS_CONFIG_DIR": str(self.home / user)}

    def allow_rules(self, nsg: str) -> dict[str, Any]:
        rules = self.network.network_security_groups.get(self.estate.resource_group, nsg).security_rules or []
        return {rule.name: rule for rule in rules if ALLOW.match(rule.name or "")}

    def classic_dnat(self) -> list[Any]:
        firewall = self.network.azure_firewalls.get(self.estate.resource_group, "fw-classic")
        return [
            rule
            for collection in firewall.nat_rule_collections or []
            if collection.name == "Portcullis-JIT"
            for rule in collection.rules or []
        ]


def seed_cli_estate(
    stack: Stack, prefix: str, readers: Sequence[DevUser], approval_on: dict[str, Any] | None = None
) -> tuple[EmulatorClient, Estate]:
    """A resource group of its own with the sample estate, alice's JIT role, Reader for `readers`
    (vm list reads the policies; an approver decides on a policy they read), the policy (with
    `approval_on` rules) put as admin, and our Deny baseline in place."""
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    estate = Estate(arm.subscription_id, f"{prefix}-{uuid.uuid4().hex[:6]}")
    arm.seed(estate.resources())
    admin, _ = grant_roles(arm, estate)
    auth = arm.client(AuthorizationManagementClient)
    for user in readers:
        assign_role(auth, arm.subscription_id, estate.scope, READER_ROLE, user.object_id)
    body = estate.policy_body(approval_on=approval_on)
    AppClient(stack.api_url, admin, stack.headers_for).put_policy(estate, body)
    wait_for(lambda: all(our_denies(arm, estate, nsg) for nsg in ESTATE_NSGS), 60, "the Deny baseline")
    return arm, estate


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("cli-home")
    with start_stack(tmp_path_factory.mktemp("cli-stack")) as stack:
        # vm list reads the policies: alice (a requester) and eve (no initiate right) may read them.
        arm, estate = seed_cli_estate(stack, "rg-cli", (ALICE, EVE))
        rig = Rig(stack, arm, estate, arm.client(NetworkManagementClient), home)
        configure = stack.cli_configure_line().split()[1:]  # the exact line `make up` prints
        for user in ("alice", "eve", "nobody", "admin"):
            rig.cli(user, *configure, check=True)
        yield rig


def request_id_of(stderr: str) -> str:
    match = re.search(r"request ([0-9a-zA-Z-]{8,})", stderr)
    assert match, stderr
    return match.group(1)


def test_not_signed_in_exits_3_and_says_what_to_run(rig: Rig) -> None:
    done = rig.cli("nobody", "vm", "list")
    assert done.returncode == 3
    assert "portcullis login" in done.stderr


def test_login_whoami_and_vm_list(rig: Rig) -> None:
    login = rig.cli("alice", *Stack.cli_login_line().split()[1:])  # `portcullis login --dev-user alice`
    assert login.returncode == 0, login.stderr
    assert "alice@portcullis.local" in login.stderr
    me = json.loads(rig.cli("alice", "whoami", "-o", "json", check=True).stdout)
    assert me["displayName"] == "alice@portcullis.local" and me["authentication"] == "jwt"

    listed = rig.cli("alice", "vm", "list", "-o", "json", check=True)
    mine = {vm["name"]: vm for vm in json.loads(listed.stdout) if rig.estate.resource_group in vm["id"]}
    assert set(mine) == {"vm-web", "vm-db", "vm-app", "vm-ops"}
    assert sorted(port["number"] for port in mine["vm-web"]["ports"]) == [22, 3389]
    table = rig.cli("alice", "vm", "list", check=True).stdout
    assert re.search(
        r"vm-web\s+" + re.escape(rig.estate.resource_group) + r"\s+3389\s+TCP\s+\*\s+3h\s+direct", table
    )
    tsv = rig.cli("alice", "vm", "list", "-o", "tsv", check=True).stdout
    assert any(
        line.split("\t")[:3] == ["vm-app", rig.estate.resource_group, "22"] for line in tsv.splitlines()
    )


def test_request_direct_reuse_and_revoke(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    args = ("request", "vm-web", "--port", "22", "--duration", "30m", "--source", "203.0.113.7/32")
    done = rig.cli("alice", *args, "--user", "azureuser", "--justification", "INC-1: disk", check=True)
    assert done.stdout.strip() == f"ssh -p 22 azureuser@{rig.estate.web_public_ip}"
    request_id = request_id_of(done.stderr)
    # The rules exist when the line is printed: the Allow on the subnet NSG, for this request's grant.
    allow = rig.allow_rules("nsg-web-subnet")
    assert [rule.source_address_prefix for rule in allow.values()] == ["203.0.113.7/32"] or any(
        "203.0.113.7" in (rule.source_address_prefix or "") for rule in allow.values()
    )
    status = json.loads(rig.cli("alice", "status", request_id, "-o", "json", check=True).stdout)
    grant_id = status["virtualMachines"][0]["ports"][0]["grantId"]
    assert f"Portcullis-JIT-Allow-22-{grant_id}" in allow

    # A second request covered by the open grant reuses it: no second request, the same line.
    again = rig.cli(
        "alice",
        "request",
        "vm-web",
        "--port",
        "22",
        "--source",
        "203.0.113.7/32",
        "--user",
        "azureuser",
        check=True,
    )
    assert f"reusing request {request_id}" in again.stderr
    assert again.stdout.strip() == done.stdout.strip()
    active = json.loads(
        rig.cli("alice", "list", "--mine", "--active", "--vm", "vm-web", "-o", "json", check=True).stdout
    )
    assert [grant["requestId"] for grant in active] == [request_id]
    # Who holds access now, without --vm: one GET /api/grants?active=true, not one call per VM.
    holders = json.loads(rig.cli("alice", "list", "--active", "-o", "json", check=True).stdout)
    assert grant_id in [grant["grantId"] for grant in holders]

    revoked = rig.cli("alice", "revoke", request_id, check=True)
    assert "Revoked" in revoked.stdout
    wait_for(
        lambda: f"Portcullis-JIT-Allow-22-{grant_id}" not in rig.allow_rules("nsg-web-subnet"),
        30,
        "the Allow rule gone",
    )
    assert (
        rig.cli(
            "alice", "list", "--mine", "--active", "--vm", "vm-web", "-o", "json", check=True
        ).stdout.strip()
        == "[]"
    )


def test_request_behind_a_classic_firewall_prints_its_address_and_mapped_port(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    done = rig.cli(
        "alice",
        "request",
        "vm-app",
        "--port",
        "22",
        "--duration",
        "20m",
        "--source",
        "198.51.100.9/32",
        "--user",
        "ops",
        check=True,
    )
    match = re.fullmatch(
        r"ssh -p (\d+) ops@" + re.escape(rig.estate.classic_fw_public_ip), done.stdout.strip()
    )
    assert match, done.stdout
    mapped = int(match.group(1))
    assert 50000 <= mapped <= 50999
    dnat = [rule for rule in rig.classic_dnat() if "198.51.100.9" in ",".join(rule.source_addresses or [])]
    assert [(rule.destination_ports, rule.translated_port) for rule in dnat] == [([str(mapped)], "22")]
    request_id = request_id_of(done.stderr)
    rig.cli("alice", "revoke", request_id, check=True)
    wait_for(
        lambda: not [r for r in rig.classic_dnat() if "198.51.100.9" in ",".join(r.source_addresses or [])],
        30,
        "the DNAT rule gone",
    )


@pytest.mark.parametrize(
    ("user", "args", "expected"),
    [
        (
            "alice",
            ("request", "vm-web", "--port", "8080", "--source", "203.0.113.7/32"),
            "error: PortNotInPolicy: .*port 8080 is not in the policy of vm-web .*"
            r"\(target: virtualMachines\[0\]\.ports\[0\]\.number\)",
        ),
        (
            "alice",
            ("request", "vm-web", "--port", "22", "--duration", "4h", "--source", "203.0.113.7/32"),
            r"error: DurationTooLong: .*is more than PT3H.*"
            r"\(target: virtualMachines\[0\]\.ports\[0\]\.endTimeUtc\)",
        ),
        (
            "eve",
            ("request", "vm-web", "--port", "22", "--duration", "10m", "--source", "203.0.113.7/32"),
            r"error: AuthorizationFailed: eve@portcullis.local .* does not have authorization to perform "
            r"action 'Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action'.*",
        ),
    ],
    ids=["port-not-in-policy", "too-long", "no-right"],
)
def test_refusals_exit_1_with_the_apis_message(
    rig: Rig, user: str, args: tuple[str, ...], expected: str
) -> None:
    rig.cli(user, "login", "--dev-user", user, check=True)
    done = rig.cli(user, *args)
    assert done.returncode == 1, done.stderr
    # `error: <ARM code>: <message> (target: <field>)`, as the API answered it; nothing on stdout.
    assert re.fullmatch(expected, done.stderr.strip().splitlines()[-1]), done.stderr
    assert done.stdout.strip() == ""


def test_ssh_reuses_the_grant_and_runs_ssh_on_its_address(rig: Rig, tmp_path: Path) -> None:
    """A stand-in `ssh` first on PATH records its arguments: the CLI's part is the address, port and
    user it runs ssh with, and that a second `portcullis ssh` reuses the first grant."""
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\nsys.exit(3)\n")
    fake.chmod(0o755)
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    argv = [
        str(PORTCULLIS),
        "ssh",
        "vm-ops",
        "--user",
        "ops",
        "--source",
        "192.0.2.60/32",
        "--",
        "-v",
        "uptime",
    ]
    env = {**rig.env("alice"), "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 3, first.stderr  # ssh's own exit code
    args = json.loads(first.stdout)
    assert (
        args[0] == "-p"
        and int(args[1]) >= 50000
        and args[2:] == [f"ops@{rig.estate.policy_fw_public_ip}", "-v", "uptime"]
    )
    request_id = request_id_of(first.stderr)
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert f"reusing request {request_id}" in second.stderr and json.loads(second.stdout) == args
    rig.cli("alice", "revoke", request_id, check=True)


def test_rdp_writes_an_rdp_file_and_prints_the_mstsc_line(rig: Rig, tmp_path: Path) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    path = tmp_path / "web.rdp"
    done = rig.cli(
        "alice",
        "rdp",
        "vm-web",
        "--user",
        "azureuser",
        "--file",
        str(path),
        "--duration",
        "10m",
        "--source",
        "192.0.2.61/32",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mstsc /v:{rig.estate.web_public_ip}:3389"
    assert f"full address:s:{rig.estate.web_public_ip}:3389" in path.read_text()
    rig.cli("alice", "revoke", request_id_of(done.stderr), check=True)


def test_policy_export_then_apply_is_idempotent_and_dry_run_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    rig.cli("admin", "login", "--dev-user", "admin", check=True)
    exported = tmp_path / "policies.json"
    rig.cli("admin", "policy", "export", "-f", str(exported), check=True)
    ours = [p for p in json.loads(exported.read_text())["policies"] if rig.estate.resource_group in p["id"]]
    assert len(ours) == 1
    exported.write_text(json.dumps({"policies": ours}))
    assert rig.cli("admin", "policy", "apply", "-f", str(exported), check=True).stdout.startswith(
        "unchanged: "
    )

    ours[0]["properties"]["virtualMachines"][1]["ports"][0]["maxRequestAccessDuration"] = "PT1H"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(ours[0]))
    dry = rig.cli("admin", "policy", "apply", "-f", str(changed), "--dry-run", check=True).stdout
    vm = ours[0]["properties"]["virtualMachines"][1]["id"].rsplit("/", 1)[-1]
    assert dry.splitlines() == [f"would change: {ours[0]['id']}", f"   ~ {vm}"]
    again = rig.cli("admin", "policy", "apply", "-f", str(changed), "--dry-run", check=True).stdout
    assert again == dry  # nothing was written
    applied = json.loads(
        rig.cli("admin", "policy", "apply", "-f", str(changed), "-o", "json", check=True).stdout
    )
    assert [(r["action"], r["changes"]) for r in applied] == [("changed", [f"~ {vm}"])]
    assert rig.cli("admin", "policy", "apply", "-f", str(changed), check=True).stdout.startswith(
        "unchanged: "
    )
    # Put the policy back as it was, for the module's other tests.
    rig.cli("admin", "policy", "apply", "-f", str(exported), check=True)


def test_exec_revokes_when_the_command_exits_and_answers_its_code(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    script = (
        "import os, sys; print(os.environ['PORTCULLIS_HOST'], os.environ['PORTCULLIS_PORT']); sys.exit(7)"
    )
    done = rig.cli(
        "alice",
        "exec",
        "--vm",
        "vm-ops",
        "--port",
        "22",
        "--duration",
        "15m",
        "--",
        sys.executable,
        "-c",
        script,
    )
    assert done.returncode == 7, done.stderr
    host, port = done.stdout.split()
    assert host == rig.estate.policy_fw_public_ip and int(port) >= 50000
    request_id = request_id_of(done.stderr)
    status = json.loads(rig.cli("alice", "status", request_id, "-o", "json", check=True).stdout)
    assert [(p["status"], p["statusReason"]) for p in status["virtualMachines"][0]["ports"]] == [
        ("Revoked", "UserRequested")
    ]
    # No --source: the runner's own address, as the app sees it (GET /api/me sourceAddress).
    me = json.loads(rig.cli("alice", "whoami", "-o", "json", check=True).stdout)
    port = status["virtualMachines"][0]["ports"][0]
    assert me["sourceAddress"] and me["sourceAddress"] in str(port.get("allowedSourceAddressPrefix"))


def test_exec_revokes_on_sigterm(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    argv = [
        str(PORTCULLIS),
        "exec",
        "--vm",
        "vm-web",
        "--port",
        "22",
        "--duration",
        "15m",
        "--source",
        "192.0.2.45/32",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(120)",
    ]
    process = subprocess.Popen(
        argv, env=rig.env("alice"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if line.startswith("running "):
            break
    else:
        process.kill()
        raise AssertionError("".join(seen))
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    process.wait(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, rest
    request_id = request_id_of("".join(seen))
    assert f"revoked request {request_id}" in rest
    status = json.loads(rig.cli("alice", "status", request_id, "-o", "json", check=True).stdout)
    assert status["virtualMachines"][0]["ports"][0]["status"] == "Revoked"


def test_an_expired_token_is_renewed_with_the_refresh_token_and_logout_forgets_it(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    path = rig.home / "alice" / "token.json"
    cached = json.loads(path.read_text())
    assert cached["kind"] == "dev-user" and cached["refresh_token"]
    assert path.stat().st_mode & 0o077 == 0  # the user's only
    path.write_text(json.dumps({**cached, "expires_at": 0}))
    me = json.loads(rig.cli("alice", "whoami", "-o", "json", check=True).stdout)
    assert me["displayName"] == "alice@portcullis.local"
    renewed = json.loads(path.read_text())
    assert renewed["expires_at"] > time.time() and renewed["access_token"] != cached["access_token"]

    assert rig.cli("alice", "logout", check=True).stderr.strip() == "signed out"
    assert rig.cli("alice", "whoami").returncode == 3
    rig.cli("alice", "login", "--dev-user", "alice", check=True)


def test_a_pipelines_own_token_in_portcullis_token_needs_no_login(rig: Rig) -> None:
    token = rig.stack.headers_for(EVE)["Authorization"].removeprefix("Bearer ")
    env = {**rig.env("nobody"), "PORTCULLIS_TOKEN": token}
    done = subprocess.run(
        [str(PORTCULLIS), "whoami", "-o", "tsv"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[:2] == ["eve@portcullis.local", EVE.object_id]
    bad = subprocess.run(
        [str(PORTCULLIS), "whoami"],
        env={**env, "PORTCULLIS_TOKEN": "not-a-token"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 3 and "AuthenticationFailed" in bad.stderr


def test_no_wait_answers_the_request_id_at_once(rig: Rig) -> None:
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    done = rig.cli(
        "alice",
        "request",
        "vm-web",
        "--port",
        "3389",
        "--duration",
        "5m",
        "--source",
        "192.0.2.70/32",
        "--no-wait",
        check=True,
    )
    request_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), done.stdout
    status = json.loads(rig.cli("alice", "status", request_id, "-o", "json", check=True).stdout)
    assert status["requestId"] == request_id and status["virtualMachines"][0]["ports"][0]["number"] == 3389
    rig.cli("alice", "revoke", request_id, check=True)


def test_browser_sign_in_goes_through_azure_identity_and_is_silent_afterwards(
    rig: Rig, tmp_path: Path
) -> None:
    """`portcullis login --browser`: azure-identity's InteractiveBrowserCredential against the local
    issuer (authorization code + PKCE on a loopback redirect), a stand-in browser picking bob on the
    issuer's dev-user picker; later commands get their token from azure-identity's persistent cache
    without a browser."""
    assert rig.stack.issuer is not None
    standin = Path(__file__).with_name("browser_standin.py")
    env = {
        **rig.env("browser"),
        "HOME": str(tmp_path),  # azure-identity's token cache lives under it
        "BROWSER": f"{sys.executable} {standin} %s",
        "PORTCULLIS_CA_BUNDLE": str(rig.stack.issuer.ca_file),
        "PORTCULLIS_TEST_DEV_USER": "bob",
    }
    subprocess.run(
        [str(PORTCULLIS), *rig.stack.cli_configure_line().split()[1:]],
        env=env,
        check=True,
        capture_output=True,
    )
    login = subprocess.run(
        [str(PORTCULLIS), "login", "--browser"], env=env, capture_output=True, text=True, timeout=120
    )
    assert login.returncode == 0, login.stderr
    assert "signed in as bob@portcullis.local" in login.stderr and "via browser" in login.stderr
    env["BROWSER"] = "false"  # no browser from now on: the next command must be silent
    me = subprocess.run(
        [str(PORTCULLIS), "whoami", "-o", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["objectId"] == "b0b00000-0000-4000-8000-000000000002"


# Last: after it, vm names are ambiguous between the sample estate and the module's.
def test_after_make_ups_two_lines_vm_list_shows_the_sample_estate(rig: Rig) -> None:
    """`make up` seeds the sample estate and prints configure and `login --dev-user alice`; after
    those, `portcullis vm list` shows the sample VMs to alice and none of them to eve."""
    report = seed_sample(rig.stack)
    group = report.estate.resource_group
    rig.cli("alice", "login", "--dev-user", "alice", check=True)
    listed = json.loads(rig.cli("alice", "vm", "list", "-o", "json", check=True).stdout)
    assert sorted(vm["name"] for vm in listed if vm["resourceGroup"] == group) == [
        "vm-app",
        "vm-db",
        "vm-ops",
        "vm-web",
    ]
    rig.cli("eve", "login", "--dev-user", "eve", check=True)
    listed = json.loads(rig.cli("eve", "vm", "list", "-o", "json", check=True).stdout)
    assert [vm["name"] for vm in listed if vm["resourceGroup"] == group] == []
    # Two estates now have a vm-web: a name alone is ambiguous (exit 4), the resource group settles it.
    ambiguous = rig.cli("alice", "request", "vm-web", "--port", "22", "--no-wait")
    assert ambiguous.returncode == 4 and "--resource-group" in ambiguous.stderr
    by_group = rig.cli(
        "alice", "request", "vm-web", "-g", group, "--port", "22", "--no-wait", "--source", "192.0.2.80/32"
    )
    assert by_group.returncode == 0, by_group.stderr
    assert rig.cli("alice", "revoke", by_group.stdout.strip()).returncode == 0
    assert rig.cli("alice", "status", "0" * 32).returncode == 4  # no such request
