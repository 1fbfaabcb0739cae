"""The azd hooks' own logic, run by `sh` with stand-ins for `az` and `azd` on PATH that record their
arguments and answer what Microsoft Graph would: which registration the postprovision hook changes,
and that it keeps the redirect URIs a registration already has. (Graph itself is not emulated here;
the `az` calls are the documented `az ad app show|update` ones.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.infra import bicep

HOOK = bicep.INFRA / "hooks" / "postprovision.sh"
CLIENT = "11111111-2222-3333-4444-555555555555"
API_URL = "https://func-portcullis-abc.azurewebsites.net/api"
CALLBACK = "https://func-portcullis-abc.azurewebsites.net/.auth/login/aad/callback"


def run_hook(tmp_path: Path, *, managed: str | None, existing: list[str]) -> tuple[str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    answer = "\n".join(existing)
    (bin_dir / "az").write_text(
        "#!/bin/sh\n"
        f'echo "az $*" >> "{calls}"\n'
        f'if [ "$1 $2 $3" = "ad app show" ]; then printf "%s\\n" "{answer}"; fi\n'
    )
    (bin_dir / "az").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PORTCULLIS_API_URL": API_URL,
        "AUTH_CLIENT_ID": CLIENT,
    }
    if managed is not None:
        env["PORTCULLIS_APP_REGISTRATION_MANAGED"] = managed
    done = subprocess.run(["sh", str(HOOK)], env=env, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout, calls.read_text().splitlines() if calls.exists() else []


def test_the_registration_the_hooks_made_gets_the_callback_and_keeps_its_uris(tmp_path: Path) -> None:
    out, calls = run_hook(tmp_path, managed="true", existing=["https://other.example/cb"])
    update = [c for c in calls if c.startswith("az ad app update")]
    assert len(update) == 1
    words = update[0].split()
    assert words[words.index("--id") + 1] == CLIENT
    uris = words[words.index("--web-redirect-uris") + 1 : words.index("--enable-id-token-issuance")]
    assert sorted(uris) == sorted([CALLBACK, "https://other.example/cb"])
    assert words[-1] == "true"
    assert "post_login_redirect_uri=/api/ui/" in out


def test_a_second_run_adds_the_callback_once(tmp_path: Path) -> None:
    _, calls = run_hook(tmp_path, managed="true", existing=[CALLBACK])
    (update,) = [c for c in calls if c.startswith("az ad app update")]
    assert update.split().count(CALLBACK) == 1


@pytest.mark.parametrize("managed", [None, "false"])
def test_a_registration_you_brought_is_left_alone_and_you_are_told_what_to_add(
    tmp_path: Path, managed: str | None
) -> None:
    out, calls = run_hook(tmp_path, managed=managed, existing=[])
    assert calls == []
    assert CALLBACK in out and "--enable-id-token-issuance true" in out
