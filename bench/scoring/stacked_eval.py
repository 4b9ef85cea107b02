"""One evaluation job per model against one job for all of a speaker's models (evaluation.by).

    python bench/scoring/stacked_eval.py --run-dir DEMO_FOLDER [--speaker spk01] [--model tiny]
        [--workers 2] [--device cpu] [--out-json stacked_eval.json]

In a folder where the workflow has run (the demo's: `make demo`), the speaker's generalist and
every fine-tuned model of the model size are evaluated on its test set as the rules run them:
the baseline is one `python -m workflow_scripts.evaluate --model ...` process per model, one after
another (evaluation.by: none); the candidate one process with a `--member` per model (by: speaker).
Both with the run's non-intrusive options (DNSMOS and DistillMOS on 3 mixtures, its mixture scores)
and the same `--workers`. Prints both wall times, the CPU seconds, their ratio, and whether every
model's table is the same in both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def timed(commands: list[list[str]], cwd: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": time.perf_counter() - start, "processes": len(commands),
            "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a folder where the demo has run")
    parser.add_argument("--speaker", default="spk01")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--options", default="--mos dnsmos distillmos --asr none --max-utterances 3",
                        help="the non-intrusive options of the run's config")
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)
    run = args.run_dir.resolve()
    generalist = run / "results" / "pretrain" / args.model / "model.pt"
    finetuned = sorted((run / "results" / "finetune" / args.model).glob(f"*/*/{args.speaker}/model.pt"))
    if not generalist.is_file() or not finetuned:
        raise SystemExit(f"{run}: no generalist or fine-tuned {args.model} models of {args.speaker} (run the demo)")
    models = [generalist, *finetuned]
    test = run / "data" / "speakers" / args.speaker / "test"
    shared = ["--test-dir", str(test), "--input-scores", str(run / "results" / "eval" / "mixtures" / f"{args.speaker}.csv"),
              *args.options.split(), "--workers", str(args.workers), "--device", args.device]
    step = [sys.executable, "-m", "workflow_scripts.evaluate"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        separate = [[*step, "--model", str(m), "--out-csv", str(out / f"alone{i}.csv"),
                     "--out-summary", str(out / f"alone{i}.json"), *shared] for i, m in enumerate(models)]
        members = [a for i, m in enumerate(models) for a in ("--member", str(m), str(out / f"stack{i}.csv"),
                                                                str(out / f"stack{i}.json"))]
        baseline = timed(separate, REPO)
        candidate = timed([[*step, *members, *shared]], REPO)
        same = all(pd.read_csv(out / f"alone{i}.csv").equals(pd.read_csv(out / f"stack{i}.csv"))
                   for i in range(len(models)))
    print(f"{args.speaker}: the generalist and {len(finetuned)} fine-tuned {args.model} models, "
          f"{args.workers} scoring process(es), {args.device}")
    print("| evaluation | processes | wall (s) | CPU (s) |")
    print("|---|---|---|---|")
    for label, r in (("one job per model (by: none)", baseline), ("one job for all (by: speaker)", candidate)):
        print(f"| {label} | {r['processes']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    ratio = baseline["wall_s"] / candidate["wall_s"]
    print(f"by speaker: {ratio:.2f}x the wall speed, {baseline['cpu_s'] / candidate['cpu_s']:.2f}x less CPU time")
    print(f"every model's table identical: {same}")
    print("verdict:", "faster, same scores" if same and ratio > 1.0 else "NOT faster or scores differ")
    if args.out_json:
        args.out_json.write_text(json.dumps({"speaker": args.speaker, "model": args.model, "workers": args.workers,
                                             "device": args.device, "same_tables": same, "speedup": ratio,
                                             "baseline": baseline, "candidate": candidate,
                                             "command": " ".join(sys.argv)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
