"""Scores of enhanced speech, per utterance and in summary.

Per utterance: SDR of the mixture and of the enhanced speech (the challenge's SDR),
their difference (SDRi), eSTOI and wide-band PESQ of both, against the clean reference. A
metric that cannot be computed is NaN, with the reason in `notes`; a mixture without a clean
reference has these NaN with the note NO_REFERENCE. Beside them, scores that need no
reference (scoring.nonintrusive: predicted MOS, WER), of the mixture (`*_in`) and of the
enhanced speech, for every mixture. The mixture's own scores are the same for every model:
score_mixtures writes them once (the mixture scores table) and evaluate reads them back.

Scoring is CPU-bound; `scoring_pool` gives processes that score in parallel, with the
scores of serial scoring (up to eSTOI's own last digits, which pystoi varies from call
to call; tests/test_evaluate.py checks a relative tolerance of 1e-9).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.scoring.metrics import estoi, pesq_wb, safe_metric, sdr_db
from workflow_scripts.scoring.nonintrusive import INPUT, mos_of_clip

METRICS = ("sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi", "pesq_in", "pesq")
NO_REFERENCE = "not applicable: no clean reference"
INPUT_METRICS = [("sdr_in_db", sdr_db), ("estoi_in", estoi), ("pesq_in", pesq_wb)]
OUTPUT_METRICS = [("sdr_db", sdr_db), ("estoi", estoi), ("pesq", pesq_wb)]
MIXTURE_SCORE_COLUMNS = ("mixture_id", *(name for name, _ in INPUT_METRICS))  # then the non-intrusive ones, notes


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


def score_utterance(clean: np.ndarray | None, mixture: np.ndarray, enhanced: np.ndarray,
                    input_scores: dict | None = None, mos: tuple[str, ...] = (),
                    input_mos: tuple[str, ...] = ()) -> dict:
    """The reference metrics of one utterance (NaN without a reference), and the predicted MOS
    of `mos` for the enhanced speech and of `input_mos` for the mixture; the mixture's own
    reference metrics are taken from `input_scores` when given (they are the same for every
    model). `mos_models` names the predictors that ran."""
    if clean is None:
        scores = unreferenced_scores()
    else:
        if input_scores is None:
            input_scores = score_signals(clean, mixture, INPUT_METRICS)
        output_scores = score_signals(clean, enhanced, OUTPUT_METRICS)
        scores = {name: input_scores[name] for name, _ in INPUT_METRICS}
        scores.update({name: output_scores[name] for name, _ in OUTPUT_METRICS})
        scores["sdri_db"] = scores["sdr_db"] - scores["sdr_in_db"]
        scores["notes"] = "; ".join(n for n in (input_scores.get("notes"), output_scores["notes"]) if n)
    return add_mos(scores, [(enhanced, mos, ""), (mixture, input_mos, INPUT)])


def add_mos(scores: dict, signals: list[tuple[np.ndarray, tuple[str, ...], str]]) -> dict:
    """`scores` with the predicted MOS of each (audio, predictors, column suffix), their notes
    joined to its notes, `mos_models` and `mos_reasons`."""
    notes, models, reasons = [scores["notes"]] if scores["notes"] else [], {}, {}
    for audio, names, suffix in signals:
        if names:
            predicted = mos_of_clip(audio, names, suffix)
            notes += [n for n in predicted.pop("notes") if n not in notes]
            models.update(predicted.pop("mos_models"))
            reasons.update(predicted.pop("mos_reasons"))
            scores.update(predicted)
    return {**scores, "notes": "; ".join(notes), "mos_models": models, "mos_reasons": reasons}


def mixture_scores(clean: np.ndarray | None, mixture: np.ndarray, mos: tuple[str, ...] = ()) -> dict:
    """A row of the mixture scores table: INPUT_METRICS of the mixture (NaN with the note
    NO_REFERENCE without a clean reference) and the predicted MOS of `mos` (`*_in`)."""
    if clean is None:
        scores = {**{name: float("nan") for name, _ in INPUT_METRICS}, "notes": NO_REFERENCE}
    else:
        scores = score_signals(clean, mixture, INPUT_METRICS)
    return add_mos(scores, [(mixture, mos, INPUT)])


def merge_scores(rows: list[dict], extra: dict[str, list], extra_notes: list[str],
                 columns: list[str]) -> tuple[pd.DataFrame, dict, dict]:
    """The scoring processes' rows with the scores made elsewhere (`extra`: column -> a value per
    row) and further notes, as a table of `columns` (NaN for a column no one scored), and the
    MOS models the rows name and the reasons they give for a predictor that did not run."""
    models, reasons = {}, {}
    for row in rows:
        models.update(row.get("mos_models", {}))
        reasons.update(row.get("mos_reasons", {}))
    table = pd.DataFrame([{k: v for k, v in row.items() if k not in ("mos_models", "mos_reasons")}
                          for row in rows])
    for column, values in extra.items():
        table[column] = values
    table["notes"] = ["; ".join(dict.fromkeys(n for n in (*a.split("; "), b) if n))
                      for a, b in zip(table["notes"], extra_notes)]
    table = table.reindex(columns=columns)
    if "reference_words" in table.columns:
        table["reference_words"] = table["reference_words"].astype("Int64")
    return table, models, reasons


def write_score_table(path: str | Path, table: pd.DataFrame) -> None:
    """A table of scores (mixture scores, or evaluate's per-utterance scores) as CSV with
    4 decimals, atomically."""
    atomic_write_text(path, table.to_csv(index=False, float_format="%.4f"))


def read_mixture_scores(csv_path: str | Path, table: pd.DataFrame, columns: Iterable[str] = ()) -> list[dict]:
    """The mixtures' own scores (the mixture scores table), in the order of the test table;
    `columns`: the non-intrusive scores the table must hold."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: mixture scores not found")
    scores = pd.read_csv(csv_path, keep_default_na=False, na_values=[""]).set_index("mixture_id")
    missing = sorted(set(table.mixture_id) - set(scores.index))
    if missing:
        raise ValueError(f"{csv_path}: no scores for mixtures {', '.join(missing[:5])}")
    absent = [c for c in columns if c not in scores.columns]
    if absent:
        raise ValueError(f"{csv_path}: no columns {', '.join(absent)} (score the mixtures with the same"
                         " --mos and --asr as the evaluation)")
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


def start_scoring(tasks: list[tuple], pool: ProcessPoolExecutor | None) -> Iterator[dict]:
    """score_utterance of every task's arguments, in order: with a pool, every task is handed
    to it now and the job's own process is free until it reads the iterator."""
    scored = map(_score_args, tasks) if pool is None else pool.map(_score_args, tasks)
    return tqdm(scored, total=len(tasks), desc="score", unit="utt", mininterval=5.0)


def score_all(tasks: list[tuple], pool: ProcessPoolExecutor | None) -> list[dict]:
    """score_utterance of every (clean, mixture, enhanced, input_scores[, mos, input_mos]), in order."""
    return list(start_scoring(tasks, pool))


def summarize(per_utterance: pd.DataFrame, nonintrusive: Iterable[str] = ()) -> dict:
    """Each metric's mean over the utterances (NaN ignored; None when all are NaN), its NaN
    count, the number of utterances and of those without a clean reference; the corpus WER
    (all word errors / all reference words) for `wer` and `wer_in`."""
    columns = [*METRICS, *(c for c in nonintrusive if c != "reference_words")]
    summary = {"n_utterances": len(per_utterance),
               "n_without_reference": int(per_utterance["notes"].str.startswith(NO_REFERENCE).sum())}
    for name in columns:
        values = per_utterance[name].astype(float)
        summary[name] = None if values.isna().all() else float(values.mean(skipna=True))
    for name in ("wer_in", "wer"):
        if name in columns:
            words = per_utterance["reference_words"].astype(float)
            both = per_utterance[name].notna() & words.notna()
            summary[f"{name}_corpus"] = (float((per_utterance[name] * words)[both].sum() / words[both].sum())
                                         if both.any() else None)
    summary["n_nan"] = {name: int(per_utterance[name].isna().sum()) for name in columns}
    return summary
