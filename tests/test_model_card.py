"""The shipped models' cards (llmnotes/assets/<model>/README.md) are generated from their recorded
facts by tools/model_card.py; a retrained model must get a regenerated card."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "tools" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["tiny", "tiny-instruct"])
def test_committed_card_is_what_the_tool_writes(name):
    tool = _tool()
    committed = (ROOT / "llmnotes" / "assets" / name / "README.md").read_text(encoding="utf-8")
    assert committed == tool.CARDS[name](), f"run: python tools/model_card.py --write ({name}'s card is stale)"


def test_card_has_hub_metadata_and_the_recorded_numbers():
    import json

    card = (ROOT / "llmnotes" / "assets" / "tiny" / "README.md").read_text(encoding="utf-8")
    header = card.split("---")[1]
    assert "license: mit" in header and "pipeline_tag: text-generation" in header
    quality = json.loads((ROOT / "benchmarks" / "results" / "model_quality.json").read_text(encoding="utf-8"))
    assert f"{quality['coherent_fraction']:.0%}" in card and "2.2-million-parameter" in card
