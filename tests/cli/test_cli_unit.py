"""The command line's pure parts with plain values: durations and end times, connection lines by
protocol, output formats, VM resolution, reuse, policy diffs, argument handling (approvals, extend)
and the exit codes the README documents."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from portcullis_cli import config as cfg
from portcullis_cli import main
from portcullis_cli.commands import UsageError, _ports, extend_body, grant_rows, policy_changes
from portcullis_cli.connect import Endpoint, connection_line, endpoint_of, rdp_file, ssh_argv
from portcullis_cli.output import render
from portcullis_cli.timeparse import TimeError, end_time, format_duration, parse_duration, parse_until
from portcullis_cli.vms import VmNotFoundError, covers, resolve, reusable, vm_policies

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("30m", 30),
        ("2h", 120),
        ("1h30m", 90),
        ("1d", 1440),
        ("PT3H", 180),
        ("PT15M", 15),
        ("45", 45),
        ("90s", 1.5),
    ],
)
def test_durations(text: str, minutes: float) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["", "0m", "2x", "h", "-5m", "PT", "1.5h"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(TimeError, match="duration"):
        parse_duration(text)


def test_format_duration_reads_back() -> None:
    assert [format_duration(timedelta(minutes=m)) for m in (180, 90, 0.5)] == ["3h", "1h30m", "30s"]


def test_until_a_clock_time_is_local_today_or_tomorrow() -> None:
    # 09:00 UTC is 10:00 in CET: 17:30 CET is today 16:30 UTC; 08:00 CET has passed, so tomorrow.
    assert parse_until("17:30", NOW, CET) == datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
    assert parse_until("08:00", NOW, CET) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert parse_until("2026-03-02T12:00:00Z", NOW, CET) == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_until("2026-03-02T12:00", NOW, CET) == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    for bad in ("25:00", "noon", "2026-03-01T00:00:00Z"):
        with pytest.raises(TimeError):
            parse_until(bad, NOW, CET)


def test_end_time_takes_duration_or_until_never_both() -> None:
    assert end_time(NOW, "2h", None, timedelta(hours=1)) == NOW + timedelta(hours=2)
    assert end_time(NOW, None, None, timedelta(hours=1)) == NOW + timedelta(hours=1)
    with pytest.raises(TimeError, match="not both"):
        end_time(NOW, "2h", "17:30", timedelta(hours=1))


def test_connection_lines_by_protocol() -> None:
    assert (
        connection_line(Endpoint(22, "203.0.113.10", 22), "azureuser") == "ssh -p 22 azureuser@203.0.113.10"
    )
    # Behind a firewall: its address and the mapped port, still ssh for the VM's port 22.
    assert connection_line(Endpoint(22, "198.51.100.1", 50022), "ops") == "ssh -p 50022 ops@198.51.100.1"
    assert connection_line(Endpoint(3389, "198.51.100.1", 50001)) == "mstsc /v:198.51.100.1:50001"
    assert connection_line(Endpoint(5986, "203.0.113.10", 5986)) == "203.0.113.10:5986"
    assert ssh_argv(Endpoint(22, "h", 50022), None, ["uptime"]) == ["ssh", "-p", "50022", "h", "uptime"]
    assert "full address:s:h:50001" in rdp_file(Endpoint(3389, "h", 50001), "ops")


def test_endpoint_of_request_ports_and_grants() -> None:
    port = {"number": 22, "connectAddress": "198.51.100.1", "connectPort": 50022, "mappedPort": 50022}
    assert endpoint_of(port) == Endpoint(22, "198.51.100.1", 50022)
    assert endpoint_of({"port": 3389, "connectAddress": "h", "connectPort": 3389}) == Endpoint(
        3389, "h", 3389
    )
    assert endpoint_of({"number": 22, "connectAddress": None, "connectPort": 22}) is None


ROWS = [
    {"name": "vm-web", "port": 22, "sources": ["*"]},
    {"name": "vm-app", "port": 3389, "sources": ["10.0.0.0/8", "a"]},
]


def test_output_formats() -> None:
    data = {"value": ROWS}
    assert json.loads(render(data, ROWS, ["name", "port"], "json")) == data
    assert (
        render(data, ROWS, ["name", "port", "sources"], "tsv") == "vm-web\t22\t*\nvm-app\t3389\t10.0.0.0/8,a"
    )
    table = render(data, ROWS, ["name", "port"], "table").splitlines()
    assert table[0].split() == ["Name", "Port"] and set(table[1]) <= {"-", " "}
    assert table[2].split() == ["vm-web", "22"] and table[2].index("22") == table[0].index("Port")
    assert render([], [], ["name"], "table", empty="no VMs") == "no VMs"


def _policy(rg: str, *vms: str) -> dict:
    rg_id = f"/subscriptions/s/resourceGroups/{rg}/providers"
    pid = f"{rg_id}/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    return {
        "id": pid,
        "properties": {
            "virtualMachines": [
                {
                    "id": f"{rg_id}/Microsoft.Compute/virtualMachines/{vm}",
                    "ports": [{"number": 22}],
                }
                for vm in vms
            ]
        },
    }


def test_vms_resolve_by_name_id_and_resource_group() -> None:
    vms = vm_policies([_policy("rg-a", "vm-web", "vm-db"), _policy("rg-b", "vm-web")])
    assert resolve(vms, "VM-DB").resource_group == "rg-a"
    assert resolve(vms, "vm-web", "rg-b").policy_id.startswith("/subscriptions/s/resourceGroups/rg-b/")
    assert resolve(vms, vms[0].vm_id.upper()).vm_id == vms[0].vm_id
    with pytest.raises(VmNotFoundError, match="--resource-group"):
        resolve(vms, "vm-web")
    with pytest.raises(VmNotFoundError, match="vm list"):
        resolve(vms, "vm-nope")


def test_sources_cover() -> None:
    assert covers(["*"], "203.0.113.7")
    assert covers(["203.0.113.0/24"], "203.0.113.7/32")
    assert not covers(["203.0.113.0/24"], "203.0.114.7")
    assert not covers(["203.0.113.7/32"], "203.0.113.0/24")


def _grant(**changes: object) -> dict:
    grant = {
        "requestId": "r1",
        "requestor": {"objectId": "ME"},
        "port": 22,
        "status": "Initiated",
        "endTimeUtc": "2026-03-02T10:00:00.000000Z",
        "sourceAddressPrefixes": ["203.0.113.7/32"],
    }
    return {**grant, **changes}


def test_reuse_only_my_open_grant_that_covers_port_source_and_time() -> None:
    assert reusable([_grant()], "me", 22, "203.0.113.7", None, NOW)["requestId"] == "r1"
    assert reusable([_grant()], "me", 22, "203.0.113.7", NOW + timedelta(minutes=30), NOW) is not None
    assert reusable([_grant()], "me", 22, "203.0.113.7", NOW + timedelta(hours=2), NOW) is None  # too short
    assert reusable([_grant(requestor={"objectId": "other"})], "me", 22, "203.0.113.7", None, NOW) is None
    assert reusable([_grant(port=3389)], "me", 22, "203.0.113.7", None, NOW) is None
    assert reusable([_grant(status="Revoked")], "me", 22, "203.0.113.7", None, NOW) is None
    assert reusable([_grant()], "me", 22, "198.51.100.1", None, NOW) is None
    later = _grant(requestId="r2", endTimeUtc="2026-03-02T11:00:00.000000Z")
    assert reusable([_grant(), later], "me", 22, "203.0.113.7", None, NOW)["requestId"] == "r2"


def test_policy_changes_are_per_vm_and_empty_when_equal() -> None:
    current = _policy("rg", "vm-web", "vm-db")
    assert policy_changes(current, current) == []
    wanted = _policy("rg", "vm-web", "vm-app")
    wanted["properties"]["virtualMachines"][0]["ports"] = [{"number": 22}, {"number": 3389}]
    assert sorted(policy_changes(current, wanted)) == ["+ vm-app", "- vm-db", "~ vm-web"]
    assert policy_changes(None, wanted) == ["+ vm-web (new policy)", "+ vm-app (new policy)"]


def test_ports_argument() -> None:
    assert _ports("22") == [22] and _ports("22,3389") == [22, 3389]
    for bad in ("ssh", "0", "70000", ""):
        with pytest.raises(UsageError):
            _ports(bad)


def test_extend_body_needs_a_time() -> None:
    assert extend_body(NOW, "1h", None) == {"endTimeUtc": "2026-03-02T10:00:00.000000Z"}
    with pytest.raises(UsageError, match="--duration or --until"):
        extend_body(NOW, None, None)


def test_approvals_and_extend_arguments() -> None:
    parser = main.build_parser()
    args = parser.parse_args(["approvals", "approve", "r1", "--comment", "ok"])
    assert (args.approvals_command, args.request_id, args.comment) == ("approve", "r1", "ok")
    args = parser.parse_args(["approvals", "deny", "r1"])
    assert (args.approvals_command, args.comment) == ("deny", None)
    assert parser.parse_args(["extend", "r1", "--until", "17:30"]).until == "17:30"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["extend", "r1", "--until", "17:30", "--duration", "1h"])
    assert exit_.value.code == main.USAGE


def test_what_follows_double_dash_is_the_commands_own() -> None:
    parser = main.build_parser()
    args = main.parse(parser, ["ssh", "vm-web", "--user", "ops", "--", "-v", "--user", "x"])
    assert (args.vm, args.user, args.rest) == ("vm-web", "ops", ["-v", "--user", "x"])
    args = main.parse(parser, ["exec", "--vm", "vm-web", "--port", "22", "--", "make", "--", "deploy"])
    assert (args.vm, args.port, args.rest) == ("vm-web", 22, ["make", "--", "deploy"])
    assert main.parse(parser, ["ssh", "vm-web"]).rest == []


def test_usage_errors_exit_2_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTCULLIS_CONFIG_DIR", str(tmp_path))
    assert main.main(["request", "vm-web", "--port", "ssh"]) == main.USAGE
    assert "--port" in capsys.readouterr().err
    assert main.main(["exec", "--vm", "vm-web", "--port", "22"]) == main.USAGE


def test_not_configured_exits_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTCULLIS_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("PORTCULLIS_ENDPOINT", raising=False)
    assert main.main(["login", "--dev-user", "alice"]) == main.NOT_CONFIGURED
    assert "portcullis configure" in capsys.readouterr().err


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    env = {"PORTCULLIS_CONFIG_DIR": str(tmp_path)}
    cfg.save({"endpoint": "http://file:7071", "audience": "api://file"}, env)
    assert cfg.load(env).api_url == "http://file:7071/api"
    loaded = cfg.load({**env, "PORTCULLIS_ENDPOINT": "https://env.example/api/", "PORTCULLIS_OUTPUT": "json"})
    assert (loaded.api_url, loaded.audience, loaded.output) == (
        "https://env.example/api",
        "api://file",
        "json",
    )
    cfg.save({"audience": ""}, env)  # an empty value removes a setting
    assert cfg.load(env).audience is None


def test_the_default_client_is_the_local_stacks_public_client() -> None:
    from portcullis_cli.auth import DEFAULT_DEV_PASSWORD

    from localrig.devusers import DEV_PASSWORD, PUBLIC_CLIENT_ID

    assert (cfg.DEFAULT_CLIENT_ID, DEFAULT_DEV_PASSWORD) == (PUBLIC_CLIENT_ID, DEV_PASSWORD)


def test_help_documents_examples_exit_codes_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["--help"])
    text = capsys.readouterr().out
    for needle in ("examples:", "exit codes:", "PORTCULLIS_ENDPOINT", "portcullis request vm-web"):
        assert needle in text
    assert re.search(r"3\s+not signed in", text)


def test_the_cli_imports_nothing_of_the_app() -> None:
    package = Path(main.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert not re.search(
            r"^\s*(from|import) (shared|localrig|azure\.functions|azure\.mgmt)", text, re.M
        ), source


def test_list_rows_are_one_per_grant_with_the_vm_name_and_where_to_connect() -> None:
    vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-web"
    grant = {
        "grantId": "g-000",
        "requestId": "r1",
        "vmId": vm,
        "port": 22,
        "status": "Initiated",
        "statusReason": "UserRequested",
        "endTimeUtc": "2030-01-01T13:00:00Z",
        "requestor": {"objectId": "a", "name": "alice"},
        "sourceAddressPrefixes": ["203.0.113.7/32"],
        "connectAddress": "198.51.100.1",
        "connectPort": 50022,
    }
    rows = grant_rows([grant, {**grant, "connectAddress": None}])
    assert rows[0]["vm"] == "vm-web" and rows[0]["requestor"] == "alice"
    assert [row["connect"] for row in rows] == ["198.51.100.1:50022", ""]
