"""Modules a cold worker imports must not pull heavy libraries that only one configuration needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_identity_loads_jwt_only_when_jwt_is_configured() -> None:
    probe = "import sys\nimport shared.identity\nprint('jwt' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
