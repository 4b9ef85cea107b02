"""Enhance a test folder's mixtures with a model and score them.

Per utterance: SDR of the mixture and of the enhanced speech (the
challenge's SDR), their difference (SDRi), eSTOI and wide-band PESQ of both.
A metric that cannot be computed is NaN, with the reason in `notes`; a
mixture without a clean reference (empty `clean` in test.csv) is enhanced,
and its reference metrics are NaN with the note "not applicable: no clean
reference". Writes a per-utterance CSV and a summary JSON (means ignoring
NaN, NaN counts, n_utterances, n_without_reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from workflow_scripts.audio import (
    SAMPLE_RATE,
    AudioError,
    atomic_dir,
    atomic_write_text,
    read_audio,
    write_audio,
)
from workflow_scripts.convtasnet import load_checkpoint
from workflow_scripts.metrics import estoi, pesq_wb, safe_metric, sdr_db
from workflow_scripts.training import enhance, resolve_device

log = logging.getLogger("evaluate")

TEST_COLUMNS = ("mixture_id", "mixture", "clean", "noise_id", "snr_db")
METRICS = ("sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi", "pesq_in", "pesq")
NO_REFERENCE = "not applicable: no clean reference"


def read_test_folder(folder: str | Path) -> pd.DataFrame:
    """test.csv with absolute `mixture_wav` and `clean_wav` (empty where a mixture has no clean
    reference); all files named must exist."""
    csv_path = Path(folder) / "test.csv"
    if not csv_path.is_file():
        raise AudioError(f"{csv_path}: test table not found")
    table = pd.read_csv(csv_path, keep_default_na=False)
    missing = [c for c in TEST_COLUMNS if c not in table.columns]
    if missing:
        raise AudioError(f"{csv_path}: missing columns {missing}")
    if table.empty:
        raise AudioError(f"{csv_path}: no rows")
    empty = [str(m) for m, p in zip(table.mixture_id, table.mixture) if not str(p).strip()]
    if empty:
        raise AudioError(f"{csv_path}: {len(empty)} rows name no mixture file, e.g. {empty[0]}")
    for column in ("mixture", "clean"):
        table[f"{column}_wav"] = [str(csv_path.parent / p) if str(p).strip() else "" for p in table[column]]
        absent = [p for p in table[f"{column}_wav"] if p and not Path(p).is_file()]
        if absent:
            raise AudioError(f"{csv_path}: {len(absent)} {column} files not found, e.g. {absent[0]}")
    return table


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
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="processes scoring PESQ/eSTOI (enhancement runs on one torch thread)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    table = read_test_folder(args.test_dir)
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"{args.model}: checkpoint not found")
    input_scores = read_input_scores(args.input_scores, table) if args.input_scores else [None] * len(table)
    if not all(table.clean_wav):
        log.info("%s: %d of %d mixtures have no clean reference: enhanced, not scored", args.test_dir,
                 int((table.clean_wav == "").sum()), len(table))

    # the metric workers are forked before torch starts its thread pools
    pool = multiprocessing.get_context("fork").Pool(args.threads) if args.threads > 1 else None
    try:
        # enhancement is a small share of the time; one thread avoids
        # multi-threaded torch stalling on cores shared with other jobs
        torch.set_num_threads(1)
        device = resolve_device(args.device)
        model, _ = load_checkpoint(args.model)
        model.to(device)
        log.info("enhancing %d mixtures of %s with %s on %s", len(table), args.test_dir, args.model, device)

        triples, enhanced_wavs, referenced = [], {}, []
        for row, mixture_scores in tqdm(zip(table.itertuples(), input_scores), total=len(table), desc="enhance",
                                        unit="utt", mininterval=5.0):
            mixture = read_audio(row.mixture_wav)
            enhanced = enhance(model, mixture, device)
            if args.enhanced_dir:
                enhanced_wavs[f"{row.mixture_id}.wav"] = enhanced
            referenced.append(bool(row.clean_wav))
            if not row.clean_wav:
                continue
            clean = read_audio(row.clean_wav)
            if mixture.size != clean.size:
                raise AudioError(
                    f"{row.mixture_wav}: {mixture.size} samples, but clean {row.clean_wav} "
                    f"has {clean.size}"
                )
            triples.append((clean, mixture, enhanced, mixture_scores))

        log.info("scoring %d utterances with %d process(es)", len(triples), args.threads)
        if pool is not None:
            rows = list(
                tqdm(
                    pool.imap(_score_args, triples),
                    total=len(triples),
                    desc="score",
                    unit="utt",
                    mininterval=5.0,
                )
            )
        else:
            rows = [score_utterance(*t) for t in tqdm(triples, desc="score", unit="utt", mininterval=5.0)]
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    scored = iter(rows)
    rows = [next(scored) if has_reference else unreferenced_scores() for has_reference in referenced]
    per_utterance = pd.concat(
        [table[["mixture_id", "noise_id", "snr_db"]].reset_index(drop=True), pd.DataFrame(rows)], axis=1
    )[["mixture_id", "noise_id", "snr_db", *METRICS, "notes"]]
    summary = {"model": str(args.model), "test_dir": str(args.test_dir), **summarize(per_utterance)}

    if args.enhanced_dir:
        with atomic_dir(args.enhanced_dir) as tmp:
            for name, audio in enhanced_wavs.items():
                write_audio(tmp / name, audio, SAMPLE_RATE)
    atomic_write_text(args.out_csv, per_utterance.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(args.out_summary, json.dumps(summary, indent=2) + "\n")
    log.info(
        "SDR %.2f -> %.2f dB (SDRi %.2f), eSTOI %.3f -> %.3f, PESQ %.2f -> %.2f; NaN: %s",
        *(np.nan if summary[m] is None else summary[m] for m in METRICS),
        summary["n_nan"],
    )


if __name__ == "__main__":
    main()
