"""The README shows the contract exactly as features/schema.py defines it."""

from __future__ import annotations

from pathlib import Path

from features.schema import contract_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_contract_matches_schema():
    text = README.read_text()
    start = text.index("<!-- contract:start -->\n") + len("<!-- contract:start -->\n")
    end = text.index("<!-- contract:end -->")
    assert text[start:end] == contract_markdown(), "regenerate with `omni data contract`"
