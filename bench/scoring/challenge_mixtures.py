"""The challenge's generalist on the challenge's own test mixtures: DNSMOS and DistillMOS in and out.

    python bench/scoring/challenge_mixtures.py [--genda25 ../shared/genda25] [--speakers F0 VirtualM3]
        [--model-size tiny] [--device cpu] [--workers 2] [--out-dir DIR]

A real-data check of the scores that need no clean reference: the challenge released its 45 test
mixtures of every speaker without references, so these scores are the only ones they can have.
The script runs the workflow's own steps, as its rules run them, on a local copy of the challenge
release (the layout of ../shared/genda25, made the release's layout here with symbolic links):
`prepare_generalist` (the released generalist of --model-size), `prepare_challenge_test` (a
speaker's 45 mixtures as a test folder), `score_mixtures` (the mixtures' DNSMOS SIG/BAK/OVRL and
DistillMOS) and `evaluate --input-scores` (the generalist enhances every mixture and the same
predictors score its output). It prints, per speaker, the mean over the mixtures of each score of
the input and of the output, and the number of mixtures whose score went up.

The per-utterance tables stay in --out-dir (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
SCORES = [("dnsmos_sig", "DNSMOS SIG"), ("dnsmos_bak", "DNSMOS BAK"), ("dnsmos_ovrl", "DNSMOS OVRL"),
          ("distillmos", "DistillMOS")]


def release_layout(genda25: Path, speakers: list[str], out: Path) -> Path:
    """The challenge release's layout (data/{id}/mixed_wavs, data/*.txt, checkpoints/generalists) of the copy."""
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "generalists").symlink_to((genda25 / "checkpoints").resolve())
    (out / "data").mkdir()
    for text in sorted((genda25 / "text").glob("*")):  # synth_sentences.txt marks a release's data/
        (out / "data" / text.name).symlink_to(text.resolve())
    for speaker in speakers:
        mixtures = genda25 / "test_mixtures" / speaker
        if not mixtures.is_dir():
            raise SystemExit(f"{mixtures}: no test mixtures of {speaker}")
        (out / "data" / speaker).mkdir(parents=True)
        (out / "data" / speaker / "mixed_wavs").symlink_to(mixtures.resolve())
    return out


def run(step: str, *args: str, log: Path) -> float:
    """Run a workflow step as its rule does; its stderr in `log`; the wall seconds."""
    start = time.perf_counter()
    with open(log, "w") as err:
        done = subprocess.run([sys.executable, "-m", f"workflow_scripts.{step}", *args], stderr=err, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{step} failed ({done.returncode}); its log: {log}\n{log.read_text()[-2000:]}")
    return time.perf_counter() - start


def check(args, out: Path) -> dict:
    release = release_layout(args.genda25, args.speakers, out / "release")
    model = out / "generalists" / f"{args.model_size}.pt"
    (out / "logs").mkdir(parents=True)
    run("prepare_generalist", "--challenge-dir", str(release), "--model-size", args.model_size,
        "--out", str(model), log=out / "logs" / "prepare_generalist.log")
    mos = ["--mos", "dnsmos", "distillmos"]
    results = {}
    for speaker in args.speakers:
        test = out / "speakers" / speaker / "challenge_test"
        run("prepare_challenge_test", "--speaker", speaker, "--challenge-dir", str(release),
            "--challenge-id", speaker, "--out-dir", str(test), log=out / "logs" / f"prepare_{speaker}.log")
        mixtures = out / "eval" / "mixtures" / f"{speaker}.csv"
        score_s = run("score_mixtures", "--test-dir", str(test), *mos, "--device", args.device,
                      "--out-csv", str(mixtures), log=out / "logs" / f"score_mixtures_{speaker}.log")
        table = out / "eval" / args.model_size / "generalist" / f"{speaker}.csv"
        eval_s = run("evaluate", "--model", str(model), "--test-dir", str(test), "--input-scores", str(mixtures),
                     *mos, "--device", args.device, "--workers", str(args.workers), "--out-csv", str(table),
                     "--out-summary", str(table.with_suffix(".json")), log=out / "logs" / f"evaluate_{speaker}.log")
        scores = pd.read_csv(table)
        row = {"n": len(scores), "score_mixtures_s": round(score_s, 1), "evaluate_s": round(eval_s, 1)}
        for column, _ in SCORES:
            row[f"{column}_in"] = float(scores[f"{column}_in"].mean())
            row[column] = float(scores[column].mean())
            row[f"{column}_up"] = int((scores[column] > scores[f"{column}_in"]).sum())
            row[f"{column}_missing"] = int(scores[[column, f"{column}_in"]].isna().any(axis=1).sum())
        results[speaker] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genda25", type=Path, default=Path(os.environ.get("GENDA25_DIR", REPO.parent / "shared" / "genda25")),
                        help="the local copy of the challenge release (test_mixtures/, checkpoints/)")
    parser.add_argument("--speakers", nargs="+", default=["F0", "VirtualM3"])
    parser.add_argument("--model-size", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="evaluate's scoring processes")
    parser.add_argument("--out-dir", type=Path, help="keep the tables here (default: a temporary folder)")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()

    if args.out_dir is not None:
        if args.out_dir.exists():
            parser.error(f"{args.out_dir} exists: give a new folder")
        results = check(args, args.out_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="challenge_mixtures_") as tmp:
            results = check(args, Path(tmp))

    print(f"\nthe challenge's {args.model_size} generalist on its test mixtures, {args.device}"
          f" ({platform.node()}, {os.cpu_count()} CPUs); mean over each speaker's mixtures, input -> output"
          " (mixtures whose score went up)")
    print("| speaker | mixtures | " + " | ".join(title for _, title in SCORES) + " |")
    print("|---|---|" + "---|" * len(SCORES))
    for speaker, row in results.items():
        cells = [f"{row[f'{c}_in']:.2f} -> {row[c]:.2f} ({row[f'{c}_up']}/{row['n']})" for c, _ in SCORES]
        print(f"| {speaker} | {row['n']} | " + " | ".join(cells) + " |")
    missing = {s: {c: row[f"{c}_missing"] for c, _ in SCORES if row[f"{c}_missing"]} for s, row in results.items()}
    if any(missing.values()):
        print(f"missing scores (see the tables' notes): {missing}")
    print("job times (s): " + ", ".join(f"{s}: score_mixtures {r['score_mixtures_s']}, evaluate {r['evaluate_s']}"
                                        for s, r in results.items()))
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"model_size": args.model_size, "device": args.device,
                                             "speakers": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
