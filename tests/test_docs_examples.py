"""Every Python example in README.md and docs/ runs as written: the blocks of one page run in
order in one namespace, from an empty folder, as a reader pasting them would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def test_the_pages_hold_examples():
    """The extraction finds the examples the usage guide is known to have (HEAR and losses)."""
    assert len(python_blocks(ROOT / "docs" / "usage.md")) >= 3


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_examples_run_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(python_blocks(page), 1):
        try:
            exec(compile(block, f"{page.name} block {number}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"{page.name}, Python block {number}: {type(error).__name__}: {error}")
