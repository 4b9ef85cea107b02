"""The training benches import, parse their options and print their plan on the CPU (`--dry-run`),
so that a GPU machine's time is not spent finding out that one of them no longer starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DRY_RUNS = {
    "finetune/throughput.py": ["--device", "cpu", "--sizes", "tiny", "--k", "2"],
    "finetune/fused_kernels.py": ["--graph", "tiny:7"],
    "finetune/pointwise_layout.py": ["--sizes", "tiny"],
    "finetune/decode_tiles.py": ["--forward-tiles", "64,128,4"],
    "pretrain/ddp.py": ["--device", "cpu", "--processes", "2", "4"],
}


@pytest.mark.parametrize("script", sorted(DRY_RUNS))
def test_a_bench_prints_its_plan_on_the_cpu(script, tmp_path):
    extra = ["--pool-dir", str(tmp_path / "pool")] if script == "pretrain/ddp.py" else []
    if script in ("finetune/throughput.py", "finetune/fused_kernels.py"):
        extra = ["--world-dir", str(tmp_path / "world")]
    run = subprocess.run([sys.executable, str(REPO / "bench" / script), *DRY_RUNS[script], *extra, "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("dry run: nothing is"), run.stdout
    assert lines[-1].startswith("ready: "), run.stdout
    assert not list(tmp_path.iterdir()), "a dry run wrote files"


def test_the_finetune_throughput_bench_checks_its_tolerance(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "finetune" / "throughput.py"), "--tolerance-db", "0",
                          "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "--tolerance-db must be positive" in run.stderr
