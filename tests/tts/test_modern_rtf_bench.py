"""bench/tts/modern_rtf.py prints its plan on the CPU (`--dry-run`), and runs end to end on tiny
checkpoints of both architectures, so that a GPU machine's time is not spent finding out that
it no longer starts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "tts" / "modern_rtf.py"


def test_the_modern_rtf_bench_prints_its_plan(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("dry run: nothing is"), run.stdout
    assert "f5tts: 16 sentences in batches of 1 4 16, nfe_step 32" in lines
    assert lines[-1].startswith("ready: "), run.stdout
    assert not list(tmp_path.iterdir()), "a dry run wrote files"


def test_the_modern_rtf_bench_refuses_a_zero_batch(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH), "--f5-batch-sizes", "0", "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "must be positive" in run.stderr


def test_the_modern_rtf_bench_runs_on_tiny_checkpoints(tmp_path):
    pytest.importorskip("f5_tts", reason="f5-tts is installed with --no-deps (Makefile)")
    pytest.importorskip("chatterbox", reason="chatterbox-tts is installed with --no-deps (Makefile)")
    out = tmp_path / "rtf.json"
    run = subprocess.run([sys.executable, str(BENCH), "--sizes", "tiny", "--device", "cpu", "--num-sentences", "2",
                          "--f5-batch-sizes", "1", "2", "--chatterbox-sentences", "1", "--out-json", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["f5tts"]["runs"]
    assert [r["batch_size"] for r in runs] == [1, 2] and all(r["texts"] == 2 for r in runs)
    # the same texts at every batch size: the same lengths (frames in proportion to the characters)
    assert runs[0]["audio_s"] == pytest.approx(runs[1]["audio_s"]) and runs[0]["audio_s"] > 5
    assert all(math.isfinite(r["rtf"]) and r["rtf"] > 0 for r in runs)
    chatterbox = result["chatterbox"]
    assert 0 < chatterbox["t3_tokens"] <= chatterbox["token_budget"] and chatterbox["audio_s"] > 0
    assert chatterbox["watermarker"] == "PerthImplicitWatermarker"
    assert chatterbox["t3_s"] + chatterbox["s3gen_s"] + chatterbox["watermark_s"] <= chatterbox["synth_s"]
    assert result["grid"]["speakers"] == 20 and result["grid"]["utterances_per_speaker"] == 230
    verdicts = [line for line in run.stdout.splitlines() if line.startswith("verdict: ")]
    assert [v.split(" ")[1] for v in verdicts] == ["F5-TTS:", "Chatterbox:", "grid"]
    assert verdicts[-1].startswith("verdict: grid (20 speakers x 230 utterances, ")
