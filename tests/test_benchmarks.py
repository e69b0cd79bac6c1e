"""benchmarks/models.py keeps working: its --quick mode runs every landed chapter's rows and prints the table
(the numbers themselves are a benchmark, not a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "models.py"


def test_quick_mode_prints_the_table(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--threads", "1",
                             "--json", str(tmp_path / "results.json")],
                            capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| ours | reference |") and "| ratio |" in table[0] and "| when |" in table[0]
    lstm = [line for line in table if "`torch.nn.LSTM`" in line]
    assert len(lstm) == 2 and all("quick mode" in line and "torch " in line for line in lstm)
    results = json.loads((tmp_path / "results.json").read_text())
    measured = {row["row"]: row for row in results["pairs"] if row["status"] == "measured"}
    assert set(measured) >= {"lstm-forward", "lstm-train", "conv1d", "generate", "generate-cache"}  # once landed
    assert all(row["ratio"] > 0 and row["met"] is None for row in measured.values())  # quick: no verdict


def test_every_row_states_its_requirement():
    result = subprocess.run([sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60,
                            check=True)
    rows = result.stdout.splitlines()
    assert {line.split(":")[0] for line in rows} >= {"lstm-forward", "lstm-train", "attention", "bert", "conv1d",
                                                    "generate", "generate-cache"}
    assert all("≤" in line for line in rows)
