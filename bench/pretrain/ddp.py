"""Data-parallel pre-training (DDP) against today's one-process trainer, and 1 against 2+ GPUs.

    python bench/pretrain/ddp.py --pool-dir POOL [--steps 200] [--model-size tiny] [--processes 2] [--out DIR]
    python bench/pretrain/ddp.py --pool-dir /tmp/ddp_pool --device cpu --utterances 24 --steps 6 \
        --warmup 2 --batch-size 4 --crop-seconds 0.5 --val-every 3 --repeats 1    # a CPU smoke check
    python bench/pretrain/ddp.py --pool-dir POOL --dry-run          # the plan, and what this machine lacks

Runs, each in processes of its own, one after another (`--repeats` rounds, in this order):
- `one`: today's trainer (`training.loop.train` in one process, no torch.distributed), as a `pretrain`
  job with one GPU runs it, on GPU 0;
- `ddp1`: the data-parallel path with one process (`runtime.distributed.launch`, DistributedDataParallel,
  the batch shares, the per-step collectives), on GPU 0;
- `ddpN` for each N of `--processes` (default 2) that the machine has GPUs for: N processes, one GPU each.
Each trains `--warmup` steps (untimed, a run of its own), then `--steps` timed steps from the same
seed, the genda2025 recipe (a global batch of `--batch-size` 64 x 4 s crops read from disk, peak-
normalised, SNR U[-5, 5] dB, Adam 1e-3, 4 read threads per process), validated every `--val-every`
steps on `--num-val` held-out utterances (validation time is measured and left out of steps/s).
nvidia-smi samples each GPU's utilisation every 0.5 s; the samples inside the timed window count.

Prints, per run kind: steps/s, examples/s, the spread between repeats, the ratio of `ddp1` to `one`
(the same speed within noise is expected), each `ddpN`'s speed-up and scaling efficiency over `ddp1`
(examples/s over N x those of one process), the GPUs' utilisation, the loss curves side by side
(`ddpN` follows `one` up to float rounding and GPU nondeterminism: largest difference in dB against
`--tolerance-db`), and a verdict line for each. Writes ddp.json under `--out` (default
bench/runs/<UTC date>_<machine>/) and prints a Markdown summary last. The pool is the synthetic one
of bench/pretrain/pool.py, built into `--pool-dir` when absent. On one GPU, the defaults make four
timed runs (`one`, `ddp1`, twice) of 200 steps, sized to take a few minutes in all at the rate
that bench/RESULTS.md gives in "Pre-training crops read from disk" (an estimate, not a measurement).

Imports beyond torch, numpy and soundfile (the workflow's modules it runs, and this script):
pandas (the pool's tables), scipy (workflow_scripts.files.audio), tqdm (the training loop's
progress bar); nvidia-smi where present (GPU utilisation; without it, none is reported).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the workflow's package where it is not installed

SCRIPT = Path(__file__).resolve()
UTILISATION_EVERY_S = 0.5


# ---- a run's processes -------------------------------------------------------------------------


def worker(args) -> None:
    """One process of a run: the warm-up run, then the timed run; rank 0 writes the run's JSON."""
    import torch

    from bench.pretrain.pool import SR
    from workflow_scripts.files.audio import read_audio
    from workflow_scripts.files.folders import read_noise_table, read_speech_folder
    from workflow_scripts.model.convtasnet import build_model
    from workflow_scripts.runtime.distributed import SINGLE, join_process_group
    from workflow_scripts.training import loop
    from workflow_scripts.training.data import AudioFiles, CropMixer, validation_set
    from workflow_scripts.training.recipe import Recipe

    group = join_process_group(args.device) if args.worker == "ddp" else SINGLE
    device = group.device if args.worker == "ddp" else torch.device(args.device)
    torch.set_num_threads(1)
    pool = Path(args.pool_dir)
    manifest = read_speech_folder(pool / "speech")
    speech = AudioFiles(manifest["wav"].iloc[: -args.num_val], "speech", args.read_threads)
    noises = AudioFiles(read_noise_table(pool / "noises")["wav"], "noise", args.read_threads)
    val_pairs = []
    if group.is_main:
        val_noises = [read_audio(p) for p in read_noise_table(pool / "val_noises")["wav"]]
        clean = [read_audio(p)[: 8 * SR] for p in manifest["wav"].iloc[-args.num_val :]]
        val_pairs = validation_set(clean, val_noises, 0, True)
    recipe = Recipe(batch_size=args.batch_size, crop_seconds=args.crop_seconds, lr=1e-3, snr_low_db=-5.0,
                    snr_high_db=5.0, max_steps=args.steps, val_every=args.val_every, patience=10**6, seed=0,
                    peak_normalize=True, val_metric="si_sdri")
    mixer = CropMixer(speech, noises, recipe, read_threads=args.read_threads)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    validation_s = [0.0]
    scorer = loop.validation_scorer

    def timed_scorer(pairs, metric, on):
        score = scorer(pairs, metric, on)

        def timed(model):
            sync()
            start = time.perf_counter()
            value = score(model)
            sync()
            validation_s[0] += time.perf_counter() - start
            return value

        return timed

    loop.validation_scorer = timed_scorer  # the loop's own validation, timed
    warmup = dataclasses.replace(recipe, max_steps=args.warmup, val_every=args.warmup)
    torch.manual_seed(0)
    loop.train(build_model(args.model_size), mixer, val_pairs[:1], warmup, device, prefetch=True, group=group)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    validation_s[0] = 0.0
    torch.manual_seed(0)
    model = build_model(args.model_size)
    sync()
    window_start, start = time.time(), time.perf_counter()
    result = loop.train(model, mixer, val_pairs, recipe, device, prefetch=True, group=group)
    sync()
    wall_s, window_end = time.perf_counter() - start, time.time()
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    peaks = [peak_gib]
    if group.world_size > 1:  # every process's peak, to rank 0
        import torch.distributed as dist

        peaks = [None] * group.world_size
        dist.all_gather_object(peaks, peak_gib)
    group.close()
    if not group.is_main:
        return
    training_s = wall_s - validation_s[0]
    Path(args.result).write_text(json.dumps({
        "kind": args.kind, "processes": group.world_size, "device": str(device), "steps": args.steps,
        "wall_s": wall_s, "validation_s": validation_s[0], "steps_per_s": args.steps / training_s,
        "examples_per_s": args.steps * args.batch_size / training_s, "window": [window_start, window_end],
        "peak_gib": peaks, "history": result.history,
        "data": {"utterances": len(speech), "speech_hours": round(speech.hours, 2), "noises": len(noises)},
    }, default=float))


# ---- the bench ---------------------------------------------------------------------------------------


class Utilisation:
    """nvidia-smi's utilisation and memory of every GPU, sampled in a thread while a run goes on."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()
        self._smi = shutil.which("nvidia-smi")
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            try:
                out = subprocess.run([self._smi, "--query-gpu=index,utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=10).stdout
                for line in out.strip().splitlines():
                    index, busy, memory = (int(v) for v in line.split(","))
                    self.samples.append((now, index, busy, memory))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(UTILISATION_EVERY_S)

    def __enter__(self):
        if self._smi:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._smi:
            self._thread.join()

    def within(self, window) -> dict:
        """GPU index -> (mean utilisation %, samples, mean memory MiB) inside the window."""
        per_gpu = {}
        for when, index, busy, memory in self.samples:
            if window[0] <= when <= window[1]:
                per_gpu.setdefault(index, []).append((busy, memory))
        return {str(i): {"mean_utilisation_pct": statistics.fmean(b for b, _ in s), "samples": len(s),
                         "mean_memory_mib": statistics.fmean(m for _, m in s)} for i, s in sorted(per_gpu.items())}


def worker_args(args, kind: str, result: Path) -> list[str]:
    return ["--pool-dir", str(args.pool_dir), "--device", args.device, "--model-size", args.model_size,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
            "--crop-seconds", str(args.crop_seconds), "--val-every", str(args.val_every),
            "--num-val", str(args.num_val), "--read-threads", str(args.read_threads), "--kind", kind,
            "--result", str(result)]


def run(args, kind: str, processes: int, out: Path) -> dict:
    """One run (`one`, or `ddp` over `processes`), in processes of its own; its JSON, with the GPUs'
    utilisation inside its timed window."""
    result = out / f"{kind}.run.json"
    result.unlink(missing_ok=True)
    env = dict(os.environ)
    if args.device != "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(processes))
    if kind == "one":
        command = [sys.executable, str(SCRIPT), "--worker", "one", *worker_args(args, kind, result)]
    else:
        command = [sys.executable, str(SCRIPT), "--launch", str(processes), *worker_args(args, kind, result)]
    with Utilisation() as utilisation, open(out / f"{kind}.log", "a") as log:
        started = time.perf_counter()
        finished = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=log, check=False)
    if finished.returncode != 0 or not result.is_file():
        raise RuntimeError(f"run {kind} failed (exit {finished.returncode}): see {out / f'{kind}.log'}")
    row = json.loads(result.read_text())
    row["process_wall_s"] = time.perf_counter() - started
    row["gpus"] = utilisation.within(row["window"])
    return row


def curve_difference(a: dict, b: dict) -> dict:
    """Largest absolute differences, dB, of two runs' histories (training loss and validation)."""
    def column(row, name):
        return [h[name] for h in row["history"] if h[name] == h[name]]  # NaN: step 0 has no loss
    return {name: max(abs(x - y) for x, y in zip(column(a, name), column(b, name), strict=True))
            for name in ("train_loss", "val_si_sdri_db")}


def summarize(result: dict, tolerance_db: float) -> tuple[list[str], list[str]]:
    """(table lines, verdict lines)."""
    kinds = result["runs"]
    median = {kind: statistics.median(r["steps_per_s"] for r in rows) for kind, rows in kinds.items()}
    spread = {kind: (max(r["steps_per_s"] for r in rows) - min(r["steps_per_s"] for r in rows)) / median[kind]
              for kind, rows in kinds.items()}
    lines = ["| run | processes | steps/s (median) | examples/s | spread between repeats | GPU utilisation % "
             "| peak GiB per process |", "|---|---|---|---|---|---|---|"]
    for kind, rows in kinds.items():
        last = rows[-1]
        busy = " / ".join(f"{g['mean_utilisation_pct']:.0f}" for g in last["gpus"].values()) or "-"
        peaks = " / ".join("-" if p is None else f"{p:.2f}" for p in last["peak_gib"])
        lines.append(f"| {kind} | {last['processes']} | {median[kind]:.3g} | {median[kind] * result['batch_size']:.4g} "
                     f"| {100 * spread[kind]:.1f}% | {busy} | {peaks} |")
    verdicts = []
    noise = max(0.05, spread["one"], spread["ddp1"])
    ratio = median["ddp1"] / median["one"]
    same = abs(ratio - 1) <= noise
    verdicts.append(f"DDP path, one process: {median['ddp1']:.3g} steps/s against {median['one']:.3g} for today's"
                    f" trainer ({ratio:.3f}x; noise {100 * noise:.0f}%): "
                    + ("the same speed within noise" if same else ("slower" if ratio < 1 else "faster")))
    for kind in kinds:
        if kind in ("one", "ddp1"):
            continue
        n = kinds[kind][0]["processes"]
        speedup = median[kind] / median["ddp1"]
        efficiency = speedup / n
        judgement = ("scales" if efficiency >= 0.85 else "scales partly" if efficiency >= 0.6 else "does not scale")
        verdicts.append(f"{n} processes: {median[kind] * result['batch_size']:.4g} examples/s, {speedup:.2f}x one"
                        f" process, scaling efficiency {100 * efficiency:.0f}%: {judgement}")
    first = {kind: rows[0] for kind, rows in kinds.items()}
    lines += ["", "| step | " + " | ".join(f"{k} train loss / val SI-SDRi (dB)" for k in first) + " |",
              "|---|" + "---|" * len(first)]
    for i, row in enumerate(first["one"]["history"]):
        cells = [f"{r['history'][i]['train_loss']:.3f} / {r['history'][i]['val_si_sdri_db']:.3f}" for r in first.values()]
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
    for kind, row in first.items():
        if kind == "one":
            continue
        diff = curve_difference(row, first["one"])
        worst = max(diff.values())
        verdicts.append(f"loss curve of {kind} against one: largest difference {diff['train_loss']:.3g} dB in training"
                        f" loss, {diff['val_si_sdri_db']:.3g} dB in validation SI-SDRi: "
                        + ("within" if worst <= tolerance_db else "beyond") + f" {tolerance_db} dB")
        result["curve_differences_db"][kind] = diff
    return lines, verdicts


def default_out(device: str) -> Path:
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    if device == "cpu":
        machine = f"cpu{os.cpu_count()}"
    else:
        import torch

        name = torch.cuda.get_device_name(0).lower()
        count = torch.cuda.device_count()
        machine = next((w for w in name.split() if any(c.isdigit() for c in w) and w[0].isalpha()), "gpu")
        machine += f"x{count}" if count > 1 else ""
    return REPO / "bench" / "runs" / f"{date}_{machine}"


def bench(args) -> None:
    import torch

    from bench.pretrain.pool import build_pool

    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    if args.device != "cpu" and gpus == 0:
        sys.exit("no GPU visible: run on a GPU machine, or pass --device cpu for a smoke check")
    out = (args.out or default_out(args.device)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.pool_dir = args.pool_dir.resolve()
    pool = build_pool(args.pool_dir, args.utterances)
    kinds = [("one", 1), ("ddp1", 1)]
    skipped = []
    for n in args.processes:
        if args.device == "cpu" or n <= gpus:
            kinds.append((f"ddp{n}", n))
        else:
            skipped.append(f"ddp{n} ({gpus} GPU{'s' if gpus != 1 else ''} visible)")
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name(0) if gpus else f"cpu ({os.cpu_count()} cores)",
              "gpus": gpus, "torch": torch.__version__, "command": " ".join(sys.argv), "pool": pool,
              "model_size": args.model_size, "batch_size": args.batch_size, "crop_seconds": args.crop_seconds,
              "steps": args.steps, "warmup": args.warmup, "skipped": skipped, "runs": {}, "curve_differences_db": {}}
    json_path = out / "ddp.json"
    for repeat in range(args.repeats):
        for kind, processes in kinds:
            row = run(args, kind, processes, out)
            result["runs"].setdefault(kind, []).append(row)
            print(f"round {repeat + 1}, {kind}: {row['steps_per_s']:.3g} steps/s "
                  f"({row['examples_per_s']:.4g} examples/s) on {processes} process(es)", flush=True)
            json_path.write_text(json.dumps(result, indent=1, default=float))
    lines, verdicts = summarize(result, args.tolerance_db)
    result["verdicts"] = verdicts
    json_path.write_text(json.dumps(result, indent=1, default=float))
    print(f"\n{f'{gpus} x ' if gpus else ''}{result['device']}, torch {result['torch']}, {result['date']}; {args.model_size},"
          f" batch {args.batch_size} x {args.crop_seconds:g} s crops from disk, {pool['utterances']} utterances"
          f" ({pool['speech_hours']} h); {args.steps} timed steps; wrote {json_path}\n")
    print("\n".join(lines + [""] + verdicts + [f"not run: {s}" for s in skipped]))


def plan(args) -> None:
    """--dry-run: the runs this machine would make, the pool, and what is missing."""
    import torch

    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    runs = ["one", "ddp1"] + [f"ddp{n}" for n in args.processes if args.device == "cpu" or n <= gpus]
    manifest = args.pool_dir / "speech" / "manifest.csv"
    problems = [f"--device {args.device}: no GPU visible here"] if args.device != "cpu" and not gpus else []
    problems += [f"ddp{n}: {gpus} GPUs" for n in args.processes if args.device != "cpu" and 0 < gpus < n]
    print("\n".join([
        "dry run: nothing is trained or timed",
        f"runs, {args.repeats} round(s): {' '.join(runs)}",
        f"each: {args.warmup} warm-up steps, then {args.steps} timed steps of batch {args.batch_size} x"
        f" {args.crop_seconds:g} s crops ({args.model_size}), validated every {args.val_every} steps",
        f"pool: {manifest.parent.parent}" if manifest.is_file()
        else f"pool: {args.utterances} utterances built into {args.pool_dir} first",
        f"out: {args.out or 'bench/runs/<UTC date>_<machine>/'}",
        "ready: yes" if not problems else "ready: no (" + "; ".join(problems) + ")"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-dir", type=Path, required=True, help="the synthetic pool (built when absent)")
    parser.add_argument("--utterances", type=int, default=2000, help="of a pool built here")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu (gloo; a smoke check)")
    parser.add_argument("--model-size", default="tiny", choices=("tiny", "small", "medium", "large"))
    parser.add_argument("--processes", type=int, nargs="+", default=[2], help="data-parallel runs besides one process")
    parser.add_argument("--steps", type=int, default=200, help="timed steps of each run")
    parser.add_argument("--warmup", type=int, default=20, help="steps of each run's warm-up run")
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch")
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--num-val", type=int, default=8, help="held-out utterances (their first 8 s) validating")
    parser.add_argument("--read-threads", type=int, default=4, help="per process, as the pretrain rule runs it")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all runs, for the noise between repeats")
    parser.add_argument("--tolerance-db", type=float, default=0.5, help="of the loss curves against `one`")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/runs/<UTC date>_<machine>/")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what this machine lacks; run nothing")
    parser.add_argument("--worker", choices=("one", "ddp"), help=argparse.SUPPRESS)
    parser.add_argument("--launch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error("--steps, --warmup and --repeats must be at least 1")
    if any(args.batch_size % n for n in args.processes):
        parser.error(f"--batch-size {args.batch_size} must be a multiple of every --processes")
    if args.dry_run:
        plan(args)
    elif args.worker:
        worker(args)
    elif args.launch:
        from workflow_scripts.runtime.distributed import launch

        argv = sys.argv[1:] if argv is None else list(argv)
        at = argv.index("--launch")
        launch("bench.pretrain.ddp", [*argv[:at], *argv[at + 2 :], "--worker", "ddp"], args.launch)
    else:
        bench(args)


if __name__ == "__main__":
    main()
