"""Docs that are generated must match what generates them."""

from __future__ import annotations

from pathlib import Path

from llmops_magics.magics.reference import magics_reference

ROOT = Path(__file__).resolve().parents[1]


def test_magics_reference_matches_the_parsers():
    committed = (ROOT / "docs" / "magics.md").read_text()
    assert committed == magics_reference(), "docs/magics.md is stale: run `llmops-magics reference`"


def test_reference_covers_every_registered_magic():
    from llmops_magics.magics import MAGICS

    text = magics_reference()
    for cls in MAGICS:
        for kind, prefix in (("line", "%"), ("cell", "%%")):
            for name in cls.magics[kind]:
                assert f"### `{prefix}{name}`" in text


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make demo") < readme.index("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
