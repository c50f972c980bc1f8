"""Execute notebooks headless, each in a fresh kernel started in the repository root.

    python -m tools.run_notebooks gradient_shap/gradient_shap.ipynb [more.ipynb ...]

Cells run one by one with a per-cell timeout and a progress line each; the first failing cell
stops the run with that cell's source and error, and a non-zero exit status. `make run` writes
the executed notebooks back (`--inplace`), figures inline, so that a reader browsing the
repository sees the results; without it (the tests) the executed copy stays in memory. No
timings are recorded in the notebook, so a rerun changes only what the results change.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class NotebookError(RuntimeError):
    """A notebook cell failed; the message names the notebook, the cell and the error."""


def run_notebook(path: str | Path, *, timeout: int = 600, inplace: bool = False,
                 kernel: str = "python3", log=print) -> float:
    """Execute one notebook in a fresh kernel (cwd = repository root); return its seconds."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    # The kernel gets this environment with the repository on its path, so imports work.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, record_timing=False,
                            resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with client.setup_kernel(env=env):
        for n, index in enumerate(code_cells, start=1):
            cell = nb.cells[index]
            t0 = time.perf_counter()
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError) as err:
                first = cell.source.strip().splitlines()[:1]
                raise NotebookError(
                    f"{path}: code cell {n}/{len(code_cells)} failed "
                    f"({first[0] if first else 'empty cell'!r}):\n{err}") from None
            log(f"  {path.name} cell {n}/{len(code_cells)} ok ({time.perf_counter() - t0:.1f} s)")
    seconds = time.perf_counter() - start
    if inplace:
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="paths of .ipynb files")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument("--inplace", action="store_true",
                        help="write the executed notebooks (with outputs) back to their files")
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        print(f"running {nb}", flush=True)
        try:
            seconds = run_notebook(nb, timeout=args.timeout, inplace=args.inplace,
                                   log=lambda s: print(s, flush=True))
        except (NotebookError, FileNotFoundError) as err:
            print(f"FAILED {err}", file=sys.stderr)
            return 1
        print(f"{nb}: ok in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
