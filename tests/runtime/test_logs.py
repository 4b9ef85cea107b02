"""Job logs read line by line: a step's stderr in a file holds one log record or one progress-bar
state per line, never a `\\r`, with a bounded number of bar lines and each bar's final state; on a
terminal stderr is left as it is."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from workflow_scripts.runtime import logs

REPO = Path(__file__).resolve().parents[2]

# a step-like script: setup_logging(), then bars over many quick items with log records between
STEP = """
import logging, sys
from tqdm import tqdm
from workflow_scripts.runtime.logs import setup_logging
setup_logging()
log = logging.getLogger("step")
log.info("start")
for i in tqdm(range(3000), desc="items spk01", unit="utt", mininterval=0):
    if i % 700 == 0:
        log.info("item %d", i)
for i in tqdm(range(500), desc="cleared", leave=False, mininterval=0):
    pass
with tqdm(desc="no total", unit=" files", mininterval=0) as progress:
    for i in range(800):
        progress.update()
log.warning("done")
"""
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} step (INFO|WARNING) (start|item \d+|done)$")
BAR = re.compile(r"^(items spk01|cleared): +\d+%\|[^|]*\| \d+/\d+ \[[^\]]*\]$|^no total: \d+ files \[[^\]]*\]$")


def test_step_log_in_a_file_has_one_record_or_bar_state_per_line(tmp_path):
    log_file = tmp_path / "step.log"
    with open(log_file, "w") as stderr:
        subprocess.run([sys.executable, "-c", STEP], cwd=REPO, stderr=stderr, check=True)
    text = log_file.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    records = [line for line in lines if RECORD.match(line)]
    bars = [line for line in lines if BAR.match(line)]
    assert len(records) + len(bars) == len(lines), [x for x in lines if x not in records + bars]
    assert [r.split(" ", 4)[4] for r in records] == [
        "start", "item 0", "item 700", "item 1400", "item 2100", "item 2800", "done"]
    for name, total in [("items spk01", "3000/3000"), ("cleared", "500/500")]:
        states = [line for line in bars if line.startswith(f"{name}:")]
        # the first state, one per 10% (the script runs well under the 30 s interval), the final one
        assert 2 <= len(states) <= 100 // logs.PROGRESS_STEP_PERCENT + 2, states
        assert "100%|" in states[-1] and f"| {total} [" in states[-1], states[-1]
    no_total = [line for line in bars if line.startswith("no total:")]
    assert no_total[-1].startswith("no total: 800 files [") and len(no_total) <= 3, no_total


class Clock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def refresh(writer: logs.ProgressLines, state: str) -> None:
    """One tqdm refresh: a carriage return, the state, padding."""
    writer.write("\r" + state + "  ")
    writer.flush()


def test_a_slow_bar_is_written_once_per_interval():
    clock, out = Clock(), io.StringIO()
    writer = logs.ProgressLines(out, interval_s=30.0, step_percent=10, clock=clock)
    for second in range(311):  # one refresh a second, 0.1% a second
        clock.now_s = float(second)
        refresh(writer, f"train:   {second // 10}%|#  | {second}/3000 [00:00<00:00, 1.00step/s]")
    writer.close()  # at exit: the last state, not written yet
    counts = [int(re.search(r"\| (\d+)/3000 \[", line).group(1)) for line in out.getvalue().splitlines()]
    assert counts == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 310], counts


def test_a_record_written_while_a_bar_is_shown_gets_its_own_line():
    out = io.StringIO()
    writer = logs.ProgressLines(out)
    refresh(writer, "enhance:  50%|#  | 1/2 [00:00<00:00, 1.00utt/s]")
    writer.write("2025-01-01 00:00:00,000 step INFO a record\n")
    refresh(writer, "enhance: 100%|###| 2/2 [00:00<00:00, 1.00utt/s]")
    writer.write("\n")  # tqdm's close with leave=True
    writer.close()
    assert out.getvalue().splitlines() == [
        "enhance:  50%|#  | 1/2 [00:00<00:00, 1.00utt/s]",
        "2025-01-01 00:00:00,000 step INFO a record",
        "enhance: 100%|###| 2/2 [00:00<00:00, 1.00utt/s]",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_stderr_is_left_alone(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    logs.setup_logging()
    assert sys.stderr is terminal
