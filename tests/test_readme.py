"""The README's "Analyses on your own CNN" snippet runs as written (in a folder with a few photos)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Analyses on your own CNN"):]
    section = section[: section.index("\n## ", 3)]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.usefixtures("one_thread")
def test_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i, (w, h) in enumerate([(300, 260), (240, 320)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"p{i}.jpg")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_snippet(), "README.md", "exec"), ns)
    n = 2
    assert ns["images"].shape == (n, 3, 224, 224)
    assert ns["proj"].shape == ns["guided"].shape == ns["grads"].shape == (n, 3, 224, 224)
    assert ns["maps"]["prob"].shape == (7, 7) and ns["maps"]["method"] == "full"
    assert len(ns["curves"]) == 3 * n and 0.0 <= ns["d"] <= 1.0
    assert ns["p9"].full().shape == (n, 3, 224, 224)  # k = min(9, images) units of map 0
    assert ns["grid"].dtype == np.uint8 and ns["grid"].shape[-1] == 3
