"""Reads infra/ the way the tests need it: every Bicep file parsed with pycep-parser (so a file that
does not parse fails loudly), and the few facts the checks compare against the code."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
APP_MODULE = INFRA / "modules" / "app.bicep"
ROLE_MODULE = INFRA / "modules" / "operator-role.bicep"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep JSON of one file; raises on a file pycep cannot parse."""
    result: dict[str, Any] = BicepParser().parse(file_path=path)
    return result


def resources(path: Path) -> dict[str, Any]:
    return dict(parse(path).get("resources", {}))


def resource_properties(path: Path, symbol: str) -> dict[str, Any]:
    return dict(resources(path)[symbol]["config"]["properties"])


def app_settings() -> dict[str, Any]:
    """The function app's app settings: name -> pycep value expression."""
    site = resource_properties(APP_MODULE, "functionApp")
    return {entry["name"]: entry["value"] for entry in site["siteConfig"]["appSettings"]}


def role_actions() -> list[str]:
    return list(parse(ROLE_MODULE)["variables"]["actions"]["value"])


def main_parameter_default(name: str) -> Any:
    return parse(MAIN)["parameters"][name].get("default")


def resolve_setting_default(value: Any) -> str | None:
    """The value an app setting gets when the deployment leaves every parameter at its default:
    a literal, an app-module parameter passed through from main.bicep, or `string(param)`.
    None when it is computed at deployment (a resource property, environment())."""
    app_params = parse(APP_MODULE)["parameters"]
    module_params = parse(MAIN)["modules"]["app"]["config"]["params"]
    if isinstance(value, dict) and value.get("function", {}).get("type") == "string":
        value = value["function"]["parameters"]["value_to_convert"]
    if isinstance(value, int | float | bool):
        return str(value)
    if not isinstance(value, str):
        return None
    if value in app_params:  # pycep leaves identifiers and literals both as plain strings
        passed = module_params.get(value)
        if not isinstance(passed, str) or passed not in parse(MAIN)["parameters"]:
            return None
        default = main_parameter_default(passed)
        return None if default is None else str(default)
    return value


SETTING_NAME = re.compile(
    r"""["']((?:PORTCULLIS|WEBSITE|APPLICATIONINSIGHTS)_[A-Z0-9_]+|AzureWebJobsStorage(?:__[A-Za-z]+)?)["']"""
)


def settings_read_by_code() -> set[str]:
    """Every setting name the app's code mentions as a string: shared/ and function_app.py."""
    sources = [*sorted((ROOT / "shared").rglob("*.py")), ROOT / "function_app.py"]
    names: set[str] = set()
    for source in sources:
        names |= set(SETTING_NAME.findall(source.read_text(encoding="utf-8")))
    return names
