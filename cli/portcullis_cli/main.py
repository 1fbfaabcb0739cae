"""`portcullis`: the parser, exit codes and dispatch. Only argparse and the standard library are
imported at start; each command imports what it needs, so `--help` stays fast (bench: cold start)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from portcullis_cli import __version__

# Exit codes (README: "The portcullis command line").
OK = 0
FAILED = 1  # the API refused (4xx: not in policy, too long, no right, ...) or failed (5xx, unreachable);
# also a waited-for request that was denied or whose approval lapsed
USAGE = 2  # the command line is wrong (argparse's own code too)
NOT_SIGNED_IN = 3  # no sign-in, or it expired or was refused: run `portcullis login`
NOT_FOUND = 4  # no such VM, request or policy (404)
TIMED_OUT = 5  # waited --timeout and the rules are not there yet (or a target keeps refusing them, or
# the request still waits for approval: it stays pending)
NOT_CONFIGURED = 6  # no endpoint / audience / authority: run `portcullis configure`
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = f"""exit codes:
  {OK}    ok (request --no-wait: also when the request waits for approval)
  {FAILED}    refused or API error; a waited-for request was denied or its approval lapsed
  {USAGE}    usage error
  {NOT_SIGNED_IN}    not signed in (portcullis login)
  {NOT_FOUND}    no such VM, request or policy
  {TIMED_OUT}    rules not in place within --timeout, or still waiting for approval (it stays pending)
  {NOT_CONFIGURED}    not configured (portcullis configure)
  {INTERRUPTED}  interrupted
  exec answers the command's own exit code."""

EXAMPLES = """examples:
  portcullis configure --endpoint https://portcullis.example.net --audience api://portcullis \\
      --authority https://login.microsoftonline.com/<tenant>
  portcullis login                      # az's sign-in, else the browser (--use-device-code)
  portcullis vm list
  portcullis request vm-web --port 22 --duration 30m --justification "INC-4711 disk full"
  portcullis ssh vm-web --user azureuser -- -L 8080:localhost:80
  portcullis ssh vm-db --break-glass --justification "INC-4711 production down"   # emergency
  portcullis list --mine --active
  portcullis revoke <request id>
  portcullis approvals list             # what waits for your approval or review; then approvals approve ID
  portcullis approvals review <request id> --comment "checked"   # a break-glass request, once
  portcullis extend <request id> --duration 30m
  portcullis exec --vm vm-web --port 22 --duration 15m -- ansible-playbook site.yml

environment (overrides the config file): PORTCULLIS_ENDPOINT, PORTCULLIS_AUDIENCE,
PORTCULLIS_AUTHORITY, PORTCULLIS_CA_BUNDLE, PORTCULLIS_CLIENT_ID, PORTCULLIS_OUTPUT,
PORTCULLIS_TOKEN (a bearer token to use as is), PORTCULLIS_CONFIG_DIR (where config and sign-in live).
"""


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _sub(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    epilog: str = "",
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=epilog, formatter_class=Formatter
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "tsv"),
        default=None,
        help="table (default; PORTCULLIS_OUTPUT), json (the API's answer), tsv (no header)",
    )
    return parser


def _when(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--duration", help="how long: 30m, 2h, 1h30m, PT2H (default 1h, at most the policy's maximum)"
    )
    group.add_argument("--until", help="until a local clock time (17:30) or an ISO 8601 date-time")


def _access(parser: argparse.ArgumentParser) -> None:
    _when(parser)
    parser.add_argument(
        "--source", default="my-ip", help="my-ip (default: the address the app sees you from) or a CIDR"
    )
    parser.add_argument("--resource-group", "-g", help="the VM's resource group, when its name is ambiguous")
    parser.add_argument(
        "--justification", help="why (recorded in the audit trail; with --break-glass: 10+ characters)"
    )
    parser.add_argument(
        "--break-glass",
        action="store_true",
        help="emergency: open at once without waiting for approval, where the VM's policy allows it; "
        "needs --justification (10+ characters); every approver is told and the request is flagged "
        "until one reviews it. An open grant of yours that covers the port is reused instead",
    )
    parser.add_argument("--ticket", help="a ticket id, recorded with the justification")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the rules, approval included (default 120; a pending request stays)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portcullis",
        description="Just-in-time access to Azure VMs through Portcullis: request a port, wait for the "
        "rules, connect, revoke.",
        epilog=EXAMPLES + "\n" + EXIT_CODES,
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"portcullis {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(
        commands,
        "configure",
        "store the app's endpoint and sign-in settings (no option: show them)",
        "example:\n  portcullis configure --endpoint http://127.0.0.1:7071 "
        "--audience api://portcullis-local \\\n"
        "      --authority https://127.0.0.1:8444/<tenant> --ca-bundle .localrig/emulator/ca.pem\n"
        "An empty value removes a setting (--ca-bundle '').",
    )
    p.add_argument("--endpoint", help="the app's URL (with or without /api)")
    p.add_argument("--audience", help="the app's Entra ID audience (api://...)")
    p.add_argument(
        "--authority", help="https://login.microsoftonline.com/<tenant> (locally the issuer's URL)"
    )
    p.add_argument("--ca-bundle", help="a CA file to trust for the app and the authority")
    p.add_argument("--client-id", help="the public client to sign in with")
    p.add_argument("--default-output", dest="default_output", choices=("table", "json", "tsv"))

    p = _sub(
        commands,
        "login",
        "sign in (az's sign-in, else the browser; locally --dev-user NAME)",
        "examples:\n  portcullis login\n  portcullis login --use-device-code\n"
        "  portcullis login --dev-user alice",
    )
    p.add_argument("--dev-user", help="a dev user of the local stack (alice, bob, admin, eve)")
    p.add_argument(
        "--password", help="the dev user's password (default: PORTCULLIS_DEV_PASSWORD or the local stack's)"
    )
    p.add_argument(
        "--use-device-code", action="store_true", help="sign in with a device code (no browser here)"
    )
    p.add_argument("--browser", action="store_true", help="sign in in the browser even when az is signed in")
    _sub(commands, "logout", "forget the cached sign-in")
    _sub(commands, "whoami", "who the app takes you for, and the address it sees you from")

    p = _sub(commands, "vm", "the VMs you may request (vm list)", "example:\n  portcullis vm list -o tsv")
    vm_commands = p.add_subparsers(dest="vm_command", metavar="COMMAND")
    _sub(
        vm_commands,
        "list",
        "VMs, ports, protocols, allowed sources and maximum durations from the policies you can read",
    )

    p = _sub(
        commands,
        "request",
        "request access to ports on a VM, wait for the rules, print how to connect",
        "examples:\n  portcullis request vm-web --port 22 --duration 30m\n"
        "  portcullis request vm-web --port 22,3389 --until 17:30 --source 203.0.113.0/24 --no-wait\n"
        '  portcullis request vm-db --port 22 --break-glass --justification "INC-4711 production down"\n\n'
        "--break-glass (where the VM's policy allows it) opens at once without approval; the approvers\n"
        "are told and the request shows as awaiting review until one of them reviews it.",
    )
    p.add_argument("vm", help="the VM's name or resource id")
    p.add_argument("--port", required=True, help="port(s), comma-separated: 22 or 22,3389")
    _access(p)
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="answer the request id at once (exit 0, also when it waits for approval)",
    )
    p.add_argument("--user", help="the user name in the printed ssh line")

    p = _sub(
        commands,
        "ssh",
        "reuse or request SSH access, run ssh on the right address and port (after --: ssh's arguments)",
        "examples:\n  portcullis ssh vm-web --user azureuser\n"
        "  portcullis ssh vm-app -- -i ~/.ssh/id_ed25519 uptime\n"
        '  portcullis ssh vm-db --user ops --break-glass --justification "INC-4711 production down"',
    )
    p.add_argument("vm")
    p.add_argument("--user", help="the remote user")
    p.add_argument("--port", type=int, default=22, help="the VM's SSH port (default 22)")
    _access(p)

    p = _sub(
        commands,
        "rdp",
        "reuse or request RDP access; write an .rdp file and print the mstsc line",
        "example:\n  portcullis rdp vm-web --user azureuser --file web.rdp",
    )
    p.add_argument("vm")
    p.add_argument("--user", help="the remote user (written into the .rdp file)")
    p.add_argument("--port", type=int, default=3389, help="the VM's RDP port (default 3389)")
    p.add_argument("--file", help="where to write the .rdp file (default ./<vm>.rdp)")
    p.add_argument(
        "--open", action="store_true", help="open the .rdp file with the system's client (always on Windows)"
    )
    _access(p)

    p = _sub(
        commands,
        "status",
        "a request, per port: status, end time, how to connect",
        "example:\n  portcullis status 3f0c...",
    )
    p.add_argument("request_id")
    p.add_argument("--user", help="the user name in printed ssh lines")

    p = _sub(
        commands,
        "list",
        "grants: without --vm, who holds access now on every VM you may see (yours and those you may "
        "oversee) in one call; with --vm, that VM's grants, closed ones too",
        "examples:\n  portcullis list --active\n  portcullis list --mine --active\n"
        "  portcullis list --vm vm-web -o json",
    )
    p.add_argument(
        "--mine",
        action="store_true",
        help="only your own requests, on every VM, in one call (-o json: the request records)",
    )
    p.add_argument(
        "--active",
        action="store_true",
        help="only open ones (with --mine: open or waiting; without --vm: always)",
    )
    p.add_argument("--vm", help="only this VM (name or id)")
    p.add_argument("--resource-group", "-g")

    p = _sub(commands, "revoke", "close a request's ports now", "example:\n  portcullis revoke 3f0c...")
    p.add_argument("request_id")

    _sub(commands, "compliance", "findings: foreign rules opening protected ports ahead of ours")

    p = _sub(
        commands,
        "exec",
        "open access for this machine, run the command after --, revoke when it exits",
        "example:\n  portcullis exec --vm vm-web --port 22 --duration 15m -- \\\n"
        '      sh -c \'ssh -p "$PORTCULLIS_PORT" deploy@"$PORTCULLIS_HOST" ./release.sh\'\n\n'
        "The command sees PORTCULLIS_HOST, PORTCULLIS_PORT and PORTCULLIS_REQUEST_ID; the request exec "
        "opened is revoked when the command exits, fails or is interrupted (SIGINT, SIGTERM); a grant of "
        "yours it reused stays open. The exit code is the command's.",
    )
    p.add_argument("--vm", required=True)
    p.add_argument("--port", type=int, required=True)
    _access(p)

    p = _sub(commands, "policy", "JIT policies as files: apply (idempotent; --dry-run) and export")
    policy_commands = p.add_subparsers(dest="policy_command", metavar="COMMAND")
    q = _sub(
        policy_commands,
        "apply",
        "create or replace the policies in FILE where they differ",
        "example:\n  portcullis policy apply -f jit-policies.json --dry-run",
    )
    q.add_argument(
        "-f", "--file", required=True, help='a JSON file: a policy, a list, or {"policies": [...]}'
    )
    q.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    q = _sub(
        policy_commands,
        "export",
        "the policies you may read, as a file policy apply takes",
        "example:\n  portcullis policy export > jit-policies.json",
    )
    q.add_argument("-f", "--file", help="write here instead of stdout")

    p = _sub(
        commands,
        "approvals",
        "requests waiting for your approval or review (list, approve, deny, review)",
        "examples:\n  portcullis approvals list\n  portcullis approvals approve 3f0c... --comment ok\n"
        "  portcullis approvals deny 3f0c... --comment 'not during the freeze'\n"
        "  portcullis approvals review 3f0c... --comment 'checked the session log'\n\n"
        "approve and deny act on what waits: the request, or an extension of it. You may not\n"
        "decide your own request; the requester's right is checked again when you approve.\n"
        "review marks a break-glass request (opened without approval) as looked at, once.",
    )
    approval_commands = p.add_subparsers(dest="approvals_command", metavar="COMMAND")
    _sub(
        approval_commands,
        "list",
        "requests (and extensions) waiting for your decision, break-glass requests waiting for your review",
    )
    for decision, what in (
        ("approve", "approve a pending request or extension"),
        ("deny", "deny a pending request or extension"),
        ("review", "mark a break-glass request reviewed"),
    ):
        q = _sub(approval_commands, decision, what)
        q.add_argument("request_id")
        q.add_argument("--comment", help="recorded with the decision")

    p = _sub(
        commands,
        "extend",
        "move a request's end time",
        "example:\n  portcullis extend 3f0c... --duration 1h    # ends an hour from now\n\n"
        "Within the port's maximum counted from the grant's start; on a VM that needs approval\n"
        "the extension waits for the approvers and the grant keeps its end until they decide.",
    )
    p.add_argument("request_id")
    _when(p)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Everything after the first `--` is the command's (exec) or ssh's own (`args.rest`): argparse
    never sees it, so options such as `--user` may stand anywhere before it."""
    words, rest = list(argv), []
    if "--" in words:
        split = words.index("--")
        words, rest = words[:split], words[split + 1 :]
    args = parser.parse_args(words)
    args.rest = rest
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return USAGE
    from portcullis_cli.commands import run

    return run(parser, args)


if __name__ == "__main__":
    sys.exit(main())
