"""The README's configuration table stays true: every variable settings.py reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _variables_read_by_settings() -> set[str]:
    source = (ROOT / "portal" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|int|list|networks|secret|secret_list)\(\s*"([A-Z_]+)"', source))


def test_every_setting_variable_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    variables = _variables_read_by_settings()
    assert len(variables) > 20  # the pattern above still finds the reads
    undocumented = sorted(name for name in variables if f"`{name}`" not in readme)
    assert not undocumented, f"add these to the README's configuration table: {undocumented}"


def test_the_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
