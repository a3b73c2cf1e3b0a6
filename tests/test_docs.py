"""The docs show the contract exactly as features/contract/schema.py defines it, and the README
stays a short front page whose links all resolve (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

from features.contract.schema import contract_markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTRACT = ROOT / "docs" / "contract.md"


def test_contract_doc_matches_schema():
    text = CONTRACT.read_text()
    start = text.index("<!-- contract:start -->\n") + len("<!-- contract:start -->\n")
    end = text.index("<!-- contract:end -->")
    assert text[start:end] == contract_markdown(), "regenerate with `omni data contract`"


def test_readme_is_short_and_its_doc_links_resolve():
    # issue 15: the README is a front page under 15 KB; the details live in docs/
    assert len(README.read_bytes()) < 15_000
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
