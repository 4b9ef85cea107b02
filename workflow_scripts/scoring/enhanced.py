"""Scores of enhanced speech against its clean reference, per utterance and in summary.

Per utterance: SDR of the mixture and of the enhanced speech (the challenge's SDR),
their difference (SDRi), eSTOI and wide-band PESQ of both. A metric that cannot be
computed is NaN, with the reason in `notes`; a mixture without a clean reference has
every metric NaN with the note NO_REFERENCE. The mixture's own scores are the same for
every model: score_mixtures writes them once (the mixture scores table) and evaluate
reads them back.

Scoring is CPU-bound; `scoring_pool` gives processes that score in parallel, with the
scores of serial scoring (up to eSTOI's own last digits, which pystoi varies from call
to call; tests/test_evaluate.py checks a relative tolerance of 1e-9).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.scoring.metrics import estoi, pesq_wb, safe_metric, sdr_db

METRICS = ("sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi", "pesq_in", "pesq")
NO_REFERENCE = "not applicable: no clean reference"
INPUT_METRICS = [("sdr_in_db", sdr_db), ("estoi_in", estoi), ("pesq_in", pesq_wb)]
OUTPUT_METRICS = [("sdr_db", sdr_db), ("estoi", estoi), ("pesq", pesq_wb)]
MIXTURE_SCORE_COLUMNS = ("mixture_id", *(name for name, _ in INPUT_METRICS), "notes")


def unreferenced_scores() -> dict:
    """The scores of a mixture without a clean reference: every metric not applicable."""
    return {**{name: float("nan") for name in METRICS}, "notes": NO_REFERENCE}


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


def mixture_scores(mixture_ids: Iterable[str],
                   signals: Iterable[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The mixture scores table: INPUT_METRICS of each mixture, from its (clean, mixture)."""
    rows = [{"mixture_id": mixture_id, **score_signals(clean, mixture, INPUT_METRICS)}
            for mixture_id, (clean, mixture) in zip(mixture_ids, signals)]
    return pd.DataFrame(rows)[list(MIXTURE_SCORE_COLUMNS)]


def write_score_table(path: str | Path, table: pd.DataFrame) -> None:
    """A table of scores (mixture scores, or evaluate's per-utterance scores) as CSV with
    4 decimals, atomically."""
    atomic_write_text(path, table.to_csv(index=False, float_format="%.4f"))


def read_mixture_scores(csv_path: str | Path, table: pd.DataFrame) -> list[dict]:
    """The mixtures' own scores (the mixture scores table), in the order of the test table."""
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
    """Each metric's mean over the utterances (NaN ignored; None when all are NaN), its NaN
    count, the number of utterances and of those without a clean reference."""
    summary = {"n_utterances": len(per_utterance),
               "n_without_reference": int((per_utterance["notes"] == NO_REFERENCE).sum())}
    for name in METRICS:
        values = per_utterance[name].astype(float)
        summary[name] = None if values.isna().all() else float(values.mean(skipna=True))
    summary["n_nan"] = {name: int(per_utterance[name].isna().sum()) for name in METRICS}
    return summary
