"""Re-execute the notebooks in place, so their committed outputs are current.

    python notebooks/execute.py            # every notebook
    python notebooks/execute.py 04         # those whose name starts with 04

Runs each in a kernel on this interpreter with the working directory set to
this folder, then refuses to save a notebook whose outputs show a path of the
machine (warnings and tracebacks print file names).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

HERE = Path(__file__).resolve().parent
MARKERS = ("/work/", "/home/", "/tmp/", "/Users/", "C:\\\\")


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    km = KernelManager(kernel_name="python3")
    km._kernel_spec = KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3",
        language="python",
    )
    nbclient.NotebookClient(
        nb, timeout=1200, kernel_name="python3", km=km, resources={"metadata": {"path": str(HERE)}}
    ).execute()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.get("language_info", {}).pop("version", None)
    text = nbformat.writes(nb)
    bad = [m for m in MARKERS if m in text]
    if bad:
        raise SystemExit(f"{path.name}: outputs contain a machine path ({bad}); not saved")
    path.write_text(text, encoding="utf-8")
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")


def main(prefixes: list[str]) -> int:
    for path in sorted(HERE.glob("*.ipynb")):
        if not prefixes or any(path.name.startswith(p) for p in prefixes):
            execute(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
