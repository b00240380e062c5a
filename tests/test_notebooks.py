"""Both notebooks execute top to bottom, headless, on the quickstart's (CI-size) output,
and draw their figures."""

import os

import matplotlib.image
import nbformat
import pytest
from nbclient import NotebookClient

from orca_jax.pipelines.quickstart import PRESETS, run_quickstart

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("quickstart"))
    run_quickstart(out, PRESETS["ci"], log=lambda _: None)
    return out


def execute(name: str, out_dir: str, monkeypatch) -> nbformat.NotebookNode:
    # The kernel inherits this process's environment: where the output is, and no display.
    monkeypatch.setenv("ORCA_JAX_QUICKSTART_OUT", out_dir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit with outputs cleared"
    # Raises CellExecutionError, with the failing cell's traceback, on any error.
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": out_dir}}).execute()
    return notebook


def assert_png_drawn(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert image.std() > 0  # something was drawn


def printed(notebook) -> str:
    return "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))


def test_inspect_traces_and_packing(out_dir, monkeypatch):
    notebook = execute("inspect_traces_and_packing.ipynb", out_dir, monkeypatch)
    text = printed(notebook)
    assert "⟦" in text and "── segment 2" in text and "packing: rows 32" in text  # rows hold several examples
    assert_png_drawn(os.path.join(out_dir, "notebook_packed_rows.png"))


def test_training_curves_and_results(out_dir, monkeypatch):
    notebook = execute("training_curves_and_results.ipynb", out_dir, monkeypatch)
    text = printed(notebook)
    assert "| **average** |" in text and "first error: copy" in text and "diagnosis:" in text
    assert_png_drawn(os.path.join(out_dir, "notebook_curves_and_accuracy.png"))
    assert_png_drawn(os.path.join(out_dir, "notebook_step_accuracy.png"))
