"""The README's practitioner's guide runs as written: every ```python block, in a fresh namespace."""
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_the_guide():
    for heading in ("Create a model", "timm's training API", "Fine-tune from a weights file",
                    "Features for a dense head", "AGC with SGD or AdamW", "Fold and export",
                    "Official or timm numerics"):
        assert f"### {heading}" in README
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index):
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
