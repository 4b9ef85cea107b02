"""Enhance a test folder's mixtures with a model and score them.

Per utterance: SDR of the mixture and of the enhanced speech (the
challenge's SDR), their difference (SDRi), eSTOI and wide-band PESQ of both.
A metric that cannot be computed is NaN, with the reason in `notes`; a
mixture without a clean reference (empty `clean` in test.csv) is enhanced,
and its reference metrics are NaN with the note "not applicable: no clean
reference". Writes a per-utterance CSV and a summary JSON (means ignoring
NaN, NaN counts, n_utterances, n_without_reference).

On a GPU the mixtures are enhanced together, in zero-padded batches of at
most `--batch-samples` samples (model.enhance.enhance_many, padding masked); on the
CPU, where batching is slower, one at a time (model.enhance.enhance). Tolerance:
the two agree within 1e-5 of the enhanced audio's peak and 1e-3 in every
metric (SDR in dB, eSTOI, PESQ), checked on the CPU in float32 and for the
GPU's batches against the CPU (tests/test_evaluate.py; measured 1.5e-6 and
3e-5 on the CPU, 2.2e-6 on an H100). Then the model's GPU memory and the
job's GPU slot are given back, and the CPU-bound scoring runs in `--workers`
processes, with the scores of serial scoring (up to eSTOI's own last digits,
which vary by ~1e-13 from call to call).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from workflow_scripts.files.audio import (
    SAMPLE_RATE,
    AudioError,
    atomic_dir,
    atomic_write_text,
    read_audio,
    write_audio,
)
from workflow_scripts.files.folders import read_test_folder
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.runtime.gpu import release_gpu
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.metrics import estoi, pesq_wb, safe_metric, sdr_db
from workflow_scripts.model.enhance import enhance_many
from workflow_scripts.model.enhance import enhance
from workflow_scripts.training.trainer import resolve_device

log = logging.getLogger("evaluate")

METRICS = ("sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi", "pesq_in", "pesq")
NO_REFERENCE = "not applicable: no clean reference"
# H100, 45 mixtures of 2-7.5 s: as fast as 2**23 (one batch) at a fifth of its peak memory (1.3-2.1 GiB)
GPU_BATCH_SAMPLES = 2**20


def unreferenced_scores() -> dict:
    """The scores of a mixture without a clean reference: every metric not applicable."""
    return {**{name: float("nan") for name in METRICS}, "notes": NO_REFERENCE}


INPUT_METRICS = [("sdr_in_db", sdr_db), ("estoi_in", estoi), ("pesq_in", pesq_wb)]
OUTPUT_METRICS = [("sdr_db", sdr_db), ("estoi", estoi), ("pesq", pesq_wb)]


def score_signals(clean: np.ndarray, estimate: np.ndarray, metrics) -> dict:
    """The given metrics of one estimate, NaN with a reason in `notes` where undefined."""
    scores, notes = {}, []
    for name, fn in metrics:
        scores[name], reason = safe_metric(fn, clean, estimate)
        if reason:
            notes.append(f"{name}: {reason}")
    scores["notes"] = "; ".join(notes)
    return scores


def score_utterance(clean: np.ndarray, mixture: np.ndarray, enhanced: np.ndarray,
                    input_scores: dict | None = None) -> dict:
    """All metrics of one utterance; the mixture's own scores are taken from
    `input_scores` when given (they are the same for every model)."""
    if input_scores is None:
        input_scores = score_signals(clean, mixture, INPUT_METRICS)
    output_scores = score_signals(clean, enhanced, OUTPUT_METRICS)
    scores = {name: input_scores[name] for name, _ in INPUT_METRICS}
    scores.update({name: output_scores[name] for name, _ in OUTPUT_METRICS})
    scores["sdri_db"] = scores["sdr_db"] - scores["sdr_in_db"]
    scores["notes"] = "; ".join(n for n in (input_scores.get("notes"), output_scores["notes"]) if n)
    return scores


def read_input_scores(csv_path: str | Path, table: pd.DataFrame) -> list[dict]:
    """The mixtures' own scores (from score_mixtures), in the order of the test table."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: mixture scores not found")
    scores = pd.read_csv(csv_path, keep_default_na=False, na_values=[""]).set_index("mixture_id")
    missing = sorted(set(table.mixture_id) - set(scores.index))
    if missing:
        raise ValueError(f"{csv_path}: no scores for mixtures {', '.join(missing[:5])}")
    scores["notes"] = scores["notes"].astype("string").fillna("").astype(str)
    return [scores.loc[mixture_id].to_dict() for mixture_id in table.mixture_id]


def _score_args(args) -> dict:
    return score_utterance(*args)


def read_signals(table: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Every mixture and its clean reference (None where it has none), checked to be of equal length."""
    mixtures, cleans = [], []
    for row in table.itertuples():
        mixture = read_audio(row.mixture_wav)
        clean = read_audio(row.clean_wav) if row.clean_wav else None
        if clean is not None and clean.size != mixture.size:
            raise AudioError(
                f"{row.mixture_wav}: {mixture.size} samples, but clean {row.clean_wav} has {clean.size}"
            )
        mixtures.append(mixture)
        cleans.append(clean)
    return mixtures, cleans


def enhance_mixtures(model_path: str | Path, mixtures: list[np.ndarray], device: torch.device,
                     batch_samples: int) -> list[np.ndarray]:
    """Every mixture enhanced by the checkpoint's model: in padded batches of at
    most `batch_samples` samples, or one at a time when it is 0. The model's
    memory and this job's GPU slot are given back before returning."""
    model, _ = load_checkpoint(model_path)
    model.to(device)
    log.info("enhancing %d mixtures with %s on %s (%s)", len(mixtures), model_path, device,
             f"batches of <= {batch_samples} samples" if batch_samples else "one at a time")
    if batch_samples:
        enhanced = enhance_many(model, mixtures, device, max_batch_samples=batch_samples)
    else:
        enhanced = [enhance(model, m, device) for m in tqdm(mixtures, desc="enhance", unit="utt", mininterval=5.0)]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    release_gpu()
    return enhanced


def scoring_pool(workers: int) -> ProcessPoolExecutor | None:
    """`workers` scoring processes (None for one), forked now: before torch starts
    CUDA or its thread pool, and before the GPU slot's lock file is opened, which
    a forked child would go on holding after the job gives the slot back."""
    if workers < 2:
        return None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    pool.submit(int).result()  # under fork, the first task forks every worker
    return pool


def score_all(triples: list[tuple], pool: ProcessPoolExecutor | None) -> list[dict]:
    """score_utterance of every (clean, mixture, enhanced, input_scores), in order."""
    scored = map(_score_args, triples) if pool is None else pool.map(_score_args, triples)
    return list(tqdm(scored, total=len(triples), desc="score", unit="utt", mininterval=5.0))


def summarize(per_utterance: pd.DataFrame) -> dict:
    summary = {"n_utterances": len(per_utterance),
               "n_without_reference": int((per_utterance["notes"] == NO_REFERENCE).sum())}
    for name in METRICS:
        values = per_utterance[name].astype(float)
        summary[name] = None if values.isna().all() else float(values.mean(skipna=True))
    summary["n_nan"] = {name: int(per_utterance[name].isna().sum()) for name in METRICS}
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model checkpoint (.pt)")
    parser.add_argument("--test-dir", required=True, help="test folder (test.csv)")
    parser.add_argument("--out-csv", required=True, help="per-utterance metrics")
    parser.add_argument("--out-summary", required=True, help="summary JSON")
    parser.add_argument("--input-scores", default=None,
                        help="the mixtures' own scores (score_mixtures CSV); computed here when absent")
    parser.add_argument("--enhanced-dir", default=None, help="optional folder for the enhanced wavs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch-samples", type=int, default=None,
                        help="samples per padded enhancement batch, 0: one mixture at a time "
                             f"(default {GPU_BATCH_SAMPLES} on a GPU, 0 on the CPU)")
    parser.add_argument("--workers", "--threads", type=int, default=None, dest="workers",
                        help="processes scoring PESQ/eSTOI (default: the CPUs this job may use; "
                             "--threads is its older name)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    workers = len(os.sched_getaffinity(0)) if args.workers is None else args.workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if args.batch_samples is not None and args.batch_samples < 0:
        raise ValueError(f"--batch-samples must be >= 0, got {args.batch_samples}")
    table = read_test_folder(args.test_dir)
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"{args.model}: checkpoint not found")
    input_scores = read_input_scores(args.input_scores, table) if args.input_scores else [None] * len(table)
    referenced = [bool(path) for path in table.clean_wav]
    if not all(referenced):
        log.info("%s: %d of %d mixtures have no clean reference: enhanced, not scored", args.test_dir,
                 referenced.count(False), len(table))

    workers = min(workers, max(sum(referenced), 1))
    pool = scoring_pool(workers)
    try:
        mixtures, cleans = read_signals(table)
        # enhancement is a small share of the time; one thread avoids
        # multi-threaded torch stalling on cores shared with other jobs
        torch.set_num_threads(1)
        device = resolve_device(args.device)
        batch_samples = args.batch_samples
        if batch_samples is None:
            batch_samples = GPU_BATCH_SAMPLES if device.type == "cuda" else 0
        enhanced = enhance_mixtures(args.model, mixtures, device, batch_samples)
        triples = [t for t in zip(cleans, mixtures, enhanced, input_scores) if t[0] is not None]
        log.info("scoring %d utterances with %d process(es)", len(triples), workers)
        scored = iter(score_all(triples, pool))
    finally:
        if pool is not None:
            pool.shutdown()

    rows = [next(scored) if has_reference else unreferenced_scores() for has_reference in referenced]
    per_utterance = pd.concat(
        [table[["mixture_id", "noise_id", "snr_db"]].reset_index(drop=True), pd.DataFrame(rows)], axis=1
    )[["mixture_id", "noise_id", "snr_db", *METRICS, "notes"]]
    summary = {"model": str(args.model), "test_dir": str(args.test_dir), **summarize(per_utterance)}

    if args.enhanced_dir:
        with atomic_dir(args.enhanced_dir) as tmp:
            for mixture_id, audio in zip(table.mixture_id, enhanced):
                write_audio(tmp / f"{mixture_id}.wav", audio, SAMPLE_RATE)
    atomic_write_text(args.out_csv, per_utterance.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(args.out_summary, json.dumps(summary, indent=2) + "\n")
    log.info(
        "SDR %.2f -> %.2f dB (SDRi %.2f), eSTOI %.3f -> %.3f, PESQ %.2f -> %.2f; NaN: %s",
        *(np.nan if summary[m] is None else summary[m] for m in METRICS),
        summary["n_nan"],
    )


if __name__ == "__main__":
    main()
