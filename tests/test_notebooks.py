"""The notebooks in notebooks/ run top to bottom without an error.

Each is executed with nbclient in a temporary copy, with the working directory
set to notebooks/ (they read ``../tests/reference/``), in a kernel running this
interpreter (the kernel command is pinned to ``sys.executable``, so the
notebooks use the same environment as the tests).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from jupyter_client.kernelspec import KernelSpec  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ABSOLUTE_PATH_MARKERS = ("/work/", "/home/", "/tmp/", "/Users/", "C:\\\\")


def kernel_manager() -> KernelManager:
    """A manager whose kernel is ipykernel on this interpreter, whatever 'python3' resolves to."""
    km = KernelManager(kernel_name="python3")
    km._kernel_spec = KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3",
        language="python",
    )
    return km


def run(nb):
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", km=kernel_manager(), resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    return client.execute()  # raises CellExecutionError, naming the cell, on any error


def test_there_are_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_"]


def test_kernel_is_this_interpreter():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os, sys; print(sys.executable); print(os.getcwd())")])
    out = run(nb).cells[0].outputs[0]["text"].splitlines()
    assert Path(out[0]).resolve() == Path(sys.executable).resolve()
    assert Path(out[1]).resolve() == NOTEBOOK_DIR


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path):
    """Committed with outputs, python3 kernelspec, no machine paths, small."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.outputs for c in code), "notebooks are committed with their outputs"
    for marker in ABSOLUTE_PATH_MARKERS:
        assert marker not in text, f"{path.name} contains an absolute path ({marker})"
    assert path.stat().st_size < 1_500_000


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(nb)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    run(fresh)
    errors = [o for c in fresh.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
