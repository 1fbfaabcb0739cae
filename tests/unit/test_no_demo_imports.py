"""Tests build their estates with the kit in localrig/estates/ (issue 10 item 6): `demo/` is the
`make demo` story and may change with it, so no file under tests/ imports it, and the demo and the
benchmarks import the kit too rather than keeping builders of their own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports (absolute names; `__import__`/`import_module` string calls too)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules.append(node.args[0].value)
    return modules


def importers_of(package: str, under: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(under.rglob("*.py"))
        for module in imported_modules(path)
        if module == package or module.startswith(f"{package}.")
    ]


def test_no_test_imports_demo() -> None:
    assert importers_of("demo", ROOT / "tests") == []


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import demo.estate\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("from demo import snapshot\n", encoding="utf-8")
    (tmp_path / "c.py").write_text(
        "import importlib\nimportlib.import_module('demo.client')\n", encoding="utf-8"
    )
    (tmp_path / "d.py").write_text(
        "import demonstration\nfrom localrig.estates import sample\n", encoding="utf-8"
    )
    found = sorted(m for p in tmp_path.glob("*.py") for m in imported_modules(p) if m.split(".")[0] == "demo")
    assert found == ["demo", "demo.client", "demo.estate"]


def test_the_old_estate_builders_are_gone() -> None:
    """One kit: the demo's, the benchmarks' and the emulator tests' own builders were folded into it."""
    gone = ["demo/estate.py", "demo/client.py", "demo/snapshot.py", "bench/estate.py"]
    gone.append("tests/emulator/network_estate.py")
    assert [name for name in gone if (ROOT / name).exists()] == []
    for user in ("demo", "bench"):
        assert any(
            m.startswith("localrig.estates") for p in (ROOT / user).rglob("*.py") for m in imported_modules(p)
        )
