"""`dl4nlp book`: build the book with every page executed, offline, on the CPU.

Every warning is an error (`-W -n --keep-going`), and every page is rebuilt (`--all`:
an incremental rebuild after a failed build can exit 0); execution stays cached.

Jupyter Book executes the pages one after another. The pages use one torch thread each, so
before the build the pages that the cache does not hold yet run side by side, one kernel per
CPU (at most four), each kernel with one thread, into the cache that the build then reads
(myst-nb's `cache` mode matches a notebook by its code cells); `_build/pre-execution.log` says
what ran and how long, and how much of it the kernel spent running cells. A page that now and then
took minutes beside another was, at least once, a kernel's reply to a cell that never arrived: these
runs go on once the kernel has reported the cell idle (`dl4nlp.instructor.execution`), and the log
names the cells whose reply was lost.
A page that fails there (or has a cell that runs past 120 s in smoke mode) is left to the build,
which runs it again and reports any error as usual.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

PRE_EXECUTION_TIMEOUT = {True: 120, False: 900}  # seconds a cell may take, smoke / full: then the build runs it
# Side by side, each kernel keeps to one thread in every library (the pages set torch's already): two threads
# that share a core with another kernel wait for each other at every parallel region.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "TOKENIZERS_PARALLELISM": "false"}


def build_book(root: Path, *, smoke: bool = False, output: Path | None = None) -> int:
    """Build the book with every warning an error; offline; rebuilds all pages (execution stays cached)."""
    from dl4nlp.runtime import OFFLINE_ENVIRONMENT, SMOKE_VARIABLE

    environment = {**os.environ, **OFFLINE_ENVIRONMENT}
    environment.pop(SMOKE_VARIABLE, None)
    if smoke:
        environment[SMOKE_VARIABLE] = "1"
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--all",
               "--warningiserror", "--nitpick", "--keep-going"]
    if output is not None:
        command += ["--path-output", str(output)]
    start = time.perf_counter()
    # The widget manager comes from the npm registry, so the built book serves it itself.
    subprocess.run(["sh", str(root / "scripts" / "fetch_widget_manager.sh")], check=True)
    cache = (output if output is not None else root) / "_build" / ".jupyter_cache"  # where myst-nb keeps it
    subprocess.run([sys.executable, "-m", "dl4nlp.instructor.book", str(root), str(cache),
                    str(PRE_EXECUTION_TIMEOUT[smoke])], env={**environment, **ONE_THREAD})
    code = subprocess.run(command, env=environment).returncode
    print(f"book build {'succeeded' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s")
    return code


def notebook_pages(root: Path) -> list[Path]:
    """The book's pages that are notebooks, in the order of _toc.yml."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    return [root / f"{name}.ipynb" for name in parse_toc_yaml(root / "_toc.yml")
            if (root / f"{name}.ipynb").is_file()]


def _timing(notebook) -> str:
    """Where a page's time went, from nbclient's timestamps in each code cell's metadata: in the kernel (from the
    cell's execute_input to its execute_reply) and around it (from the request until the kernel went idle, less
    that), with the slowest cell. What tells a slow page (the kernel busy) from a stalled one (messages late)."""
    from datetime import datetime

    kernel = around = 0.0
    slowest = (0.0, 0.0, -1)
    for index, cell in enumerate(notebook.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        try:
            busy, start, reply, idle = (datetime.fromisoformat(stamps[key].replace("Z", "+00:00")) for key in
                                        ("iopub.status.busy", "iopub.execute_input", "shell.execute_reply",
                                         "iopub.status.idle"))
        except (KeyError, ValueError):
            continue
        inside, total = (reply - start).total_seconds(), (max(idle, reply) - busy).total_seconds()
        kernel, around = kernel + inside, around + total - inside
        slowest = max(slowest, (total, inside, index))
    return (f"in the kernel {kernel:.1f} s, around it {around:.1f} s; slowest cell {slowest[2]}: {slowest[0]:.1f} s, "
            f"{slowest[1]:.1f} s of it in the kernel")


def _execute(path: str, timeout: int) -> tuple[str, object, float, str, str | None]:
    """Run one page as myst-nb would (in its own folder, its metadata's execution timeout and allow_errors
    honoured), with a client that goes on when the kernel's reply to a cell is lost (`execution`): (path,
    executed notebook, seconds, where the time went (`_timing`) and which replies were lost, error or None)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from dl4nlp.instructor.execution import ReplyTolerantClient

    notebook = nbformat.read(path, as_version=4)
    settings = notebook.metadata.get("execution", {})
    client = ReplyTolerantClient(notebook, timeout=settings.get("timeout", timeout),
                                 allow_errors=settings.get("allow_errors", False), record_timing=True,
                                 resources={"metadata": {"path": str(Path(path).parent)}})
    error = None
    start = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as failure:
        error = f"{type(failure).__name__}: {str(failure).strip()[-500:]}"
    seconds = time.perf_counter() - start
    timing = _timing(notebook)
    if client.lost_replies:
        timing += f"; {client.lost_replies_note()}"
    for cell in notebook.cells:  # cached as myst-nb would cache it: without the timestamps
        cell.get("metadata", {}).pop("execution", None)
    return path, notebook, seconds, timing, error


def execute_pages(root: Path, cache_path: Path, timeout: int, workers: int | None = None) -> list[str]:
    """Execute, side by side, the notebook pages that the cache at `cache_path` does not hold, and cache
    them as the build would. Returns the pages that failed (the build runs them again). A single page
    runs here too: this client goes on when a kernel's reply is lost, myst-nb's waits for its timeout."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_path))
    missing = []
    for path in notebook_pages(root):
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(str(path))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS
    if not missing:
        return []
    workers = workers or max(1, min(4, cpus, len(missing)))
    log = cache_path.parent / "pre-execution.log"  # what ran, how long, what failed: kept beside the cache
    log.parent.mkdir(parents=True, exist_ok=True)

    def report(line: str) -> None:
        print(line, flush=True)
        with log.open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    report(f"executing {len(missing)} page{'s' * (len(missing) != 1)}, {workers} at a time")
    failed = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(_execute, path, timeout) for path in missing]):
            path, notebook, seconds, timing, error = future.result()
            name = Path(path).relative_to(root)
            if error is None:
                cache.cache_notebook_bundle(CacheBundleIn(notebook, path, data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
                report(f"{name}: executed in {seconds:.1f} s ({timing})")
            else:
                failed.append(path)
                report(f"{name}: failed after {seconds:.1f} s; the build runs it again ({error})")
    return failed


if __name__ == "__main__":  # python -m dl4nlp.instructor.book ROOT CACHE TIMEOUT (what build_book runs)
    execute_pages(Path(sys.argv[1]).resolve(), Path(sys.argv[2]), int(sys.argv[3]))
