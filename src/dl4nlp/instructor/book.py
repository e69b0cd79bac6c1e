"""`dl4nlp book`: build the book with every page executed, offline, on the CPU.

Every warning is an error (`-W -n --keep-going`), and every page is rebuilt (`--all`:
an incremental rebuild after a failed build can exit 0); execution stays cached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


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
    code = subprocess.run(command, env=environment).returncode
    print(f"book build {'succeeded' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s")
    return code
