"""notebooks/walkthrough.ipynb: kept without outputs, and runs top to bottom (nbclient)."""

from __future__ import annotations

import nbformat
import pytest

from tests.builders import ROOT

NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
# The whole notebook runs in well under a minute; a hang fails instead of blocking.
CELL_TIMEOUT_SECONDS = 120


def test_the_notebook_is_kept_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom():
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError, naming the cell, when any cell fails.
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # every EDA chart
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "'strategy': 'svd'" in text
    assert "'fallback_reason': 'unknown_user'" in text
    for model in ("popular", "svd", "als", "ease", "itemknn"):
        assert f"\n{model} " in text  # a row of the comparison table
