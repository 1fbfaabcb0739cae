"""The CLI's tests import this checkout's `cli/` source: the `portcullis_cli` installed in .venv is
an editable install of one checkout (`pip install -e ./cli`), which in a second worktree is another
checkout's code. Putting `cli/` first on sys.path makes `import portcullis_cli` this tree's."""

from __future__ import annotations

import sys
from pathlib import Path

CLI_SOURCE = Path(__file__).resolve().parents[2] / "cli"
if str(CLI_SOURCE) not in sys.path:
    sys.path.insert(0, str(CLI_SOURCE))
