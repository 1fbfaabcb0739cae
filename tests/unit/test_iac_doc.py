"""docs/iac.md tells IaC authors which names and priorities are Portcullis's: its table must state the
code's defaults (shared/settings.py, shared/plan.py), each setting it names must be the one that
moves that value, and its Terraform and Bicep examples must stay clear of our names and bands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared import plan
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "iac.md"
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def _band(settings: Settings, name: str) -> str:
    band = getattr(settings, name)
    return f"{band.first}-{band.last}"


# table label -> (the code's value from default settings, setting name or None, an other value)
EXPECTED = {
    "NSG rule name prefix": (lambda s: plan.NAME_PREFIX, None, None),
    "NSG Allow band (per grant)": (
        lambda s: _band(s, "nsg_allow_priorities"),
        "PORTCULLIS_NSG_ALLOW_PRIORITIES",
        "1000-1099",
    ),
    "NSG Deny band (baseline per policy port)": (
        lambda s: _band(s, "nsg_deny_priorities"),
        "PORTCULLIS_NSG_DENY_PRIORITIES",
        "4000-4095",
    ),
    "classic firewall NAT rule collection": (lambda s: plan.COLLECTION_NAME, None, None),
    "Firewall Policy rule collection group": (lambda s: plan.RULE_COLLECTION_GROUP_NAME, None, None),
    "the group's DNAT rule collection": (lambda s: plan.POLICY_NAT_COLLECTION_NAME, None, None),
}
# The two "its priority" rows, in order: classic collection, then policy group.
PRIORITY_FIELDS = (
    ("firewall_nat_collection_priority", "PORTCULLIS_FIREWALL_NAT_COLLECTION_PRIORITY"),
    ("firewall_policy_rule_collection_group_priority", "PORTCULLIS_FIREWALL_POLICY_RCG_PRIORITY"),
)


def _table() -> list[tuple[str, str, str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index("| what | default | setting |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        what, default, setting = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        rows.append((what, default, "" if setting == "(fixed)" else setting))
    return rows


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_table_states_the_codes_defaults_and_the_settings_that_move_them() -> None:
    defaults = load_settings(BASE)
    rows = _table()
    named = {what: (default, setting) for what, default, setting in rows if what != "its priority"}
    assert set(named) == set(EXPECTED)
    for what, (value_of, setting, other) in EXPECTED.items():
        default, documented_setting = named[what]
        assert default == value_of(defaults), what
        assert documented_setting == (setting or ""), what
        if setting is not None:
            assert value_of(load_settings({**BASE, setting: other})) == other, setting
    priorities = [(default, setting) for what, default, setting in rows if what == "its priority"]
    assert len(priorities) == len(PRIORITY_FIELDS)
    for (default, setting), (field, expected_setting) in zip(priorities, PRIORITY_FIELDS, strict=True):
        assert setting == expected_setting
        assert int(default) == getattr(defaults, field)
        assert getattr(load_settings({**BASE, setting: "150"}), field) == 150


@pytest.mark.parametrize(
    ("language", "pattern"), [("hcl", r"priority\s*=\s*(\d+)"), ("bicep", r"priority:\s*(\d+)")]
)
def test_examples_keep_out_of_our_bands_and_names(language: str, pattern: str) -> None:
    settings = load_settings(BASE)
    ours = {
        *range(settings.nsg_allow_priorities.first, settings.nsg_allow_priorities.last + 1),
        *range(settings.nsg_deny_priorities.first, settings.nsg_deny_priorities.last + 1),
        settings.firewall_nat_collection_priority,
        settings.firewall_policy_rule_collection_group_priority,
    }
    blocks = _code_blocks(language)
    assert blocks, f"no {language} examples in docs/iac.md"
    priorities = [int(p) for block in blocks for p in re.findall(pattern, block)]
    assert priorities
    assert not ours.intersection(priorities)
    names = [n for block in blocks for n in re.findall(r"name\s*[=:]\s*['\"]([^'\"]+)['\"]", block)]
    assert names and not [n for n in names if plan.is_ours(n)]


def test_readme_links_the_page() -> None:
    assert "(docs/iac.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
