"""The example notebooks run top to bottom on small real data (nbclient), and match their generator."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow

# the last line each notebook prints, and what it must at least show on its small training subset
EXPECTED = {
    "quickstart": (r"SST-2 dev accuracy after \d+ training rows: ([\d.]+)", 0.75),
    "multi_label": (r"test macro-F1 over 6 emotions: ([\d.]+)", 0.30),
    "pairs": (r"MRPC test accuracy ([\d.]+) \(majority class ([\d.]+)\)", None),
    "interpretation": (r"TREC-6 test accuracy: ([\d.]+)", 0.80),
    "polysemy": (r"contextual vectors separate the senses of (\d+)/3 words", 3),
    "ner": (r"WNUT-17 test entity F1 after \d+ training sentences: ([\d.]+)", 0.25),
}


def test_notebooks_are_generated_from_make_notebooks(tmp_path):
    import nbformat
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    for name, cells in make_notebooks.NOTEBOOKS.items():
        committed = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
        assert [c.source for c in committed.cells] == [src for _, src in cells], \
            f"examples/{name}.ipynb is stale: run python examples/make_notebooks.py"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebook_runs(name, tmp_path, monkeypatch, request):
    if name != "polysemy":  # the others train on ../shared/data
        shared_data = request.getfixturevalue("shared_data")
        monkeypatch.setenv("BERTLEARN_DATA", str(shared_data))
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NOTEBOOK_ROWS", os.environ.get("NOTEBOOK_ROWS", "1500"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend is headless and keeps the images
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                      if o.get("output_type") == "stream" and o.get("name") == "stdout")
    pattern, floor = EXPECTED[name]
    found = re.findall(pattern, printed)
    assert found, f"{name}: no line matching {pattern!r} in the notebook's output"
    values = [float(v) for v in (found[-1] if isinstance(found[-1], tuple) else (found[-1],))]
    if floor is None:  # pairs: above the majority class
        assert values[0] > values[1] + 0.02, printed[-500:]
    else:
        assert values[0] >= floor, printed[-500:]
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    if name in ("quickstart", "interpretation", "polysemy"):
        assert images, f"{name}: plots did not render"
    if name == "interpretation":
        assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
