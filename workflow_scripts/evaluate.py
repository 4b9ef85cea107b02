"""Enhance a test folder's mixtures with a model and score them.

Per utterance: SDR of the mixture and of the enhanced speech (the
challenge's SDR), their difference (SDRi), eSTOI and wide-band PESQ of both
(scoring.enhanced). A metric that cannot be computed is NaN, with the reason
in `notes`; a mixture without a clean reference (empty `clean` in test.csv)
is enhanced, and its reference metrics are NaN with the note "not
applicable: no clean reference". Every mixture, with a reference or not, also
gets the scores that need none (scoring.nonintrusive), of the mixture (`*_in`,
from --input-scores) and of the enhanced speech: DNSMOS SIG/BAK/OVRL and
DistillMOS (--mos), and with --asr the WER against test.csv's text. Writes a
per-utterance CSV and a summary JSON (means ignoring NaN, the corpus WER,
NaN counts, n_utterances, n_without_reference, the models behind the scores).

On a GPU the mixtures are enhanced together, in zero-padded batches of at
most `--batch-samples` samples (model.enhance.enhance_many, padding masked); on the
CPU, where batching is slower, one at a time (model.enhance.enhance, the decoder as a
matrix product: the transposed conv's function up to float rounding). The two agree within 1e-5 of the
enhanced audio's peak and 1e-3 in every metric (SDR in dB, eSTOI, PESQ):
tests/test_evaluate.py checks this on the CPU in float32 and for the GPU's
batches against the CPU; the differences found and the batch size's choice
are in bench/RESULTS.md, "Evaluation". DistillMOS and Whisper then score
the enhanced speech on the GPU; then the models' GPU memory and the
job's GPU slot are given back, and the CPU-bound scoring (PESQ, eSTOI,
DNSMOS) runs in `--workers` processes, with the scores of serial scoring,
while the job's own process runs pocketsphinx where that is the ASR.

Several models of one test set are evaluated in one job with `--member MODEL
OUT_CSV OUT_SUMMARY` per model (config `evaluation.by: speaker`): the mixtures
are read, the predictors loaded and the scoring processes started once, and
each model gets the files its own job would write, with the same scores.

    python -m workflow_scripts.evaluate --model results/finetune/.../model.pt \
        --test-dir data/demo/spk01/test --input-scores results/eval/mixtures/spk01.csv \
        --out-csv results/eval/.../spk01.csv --out-summary results/eval/.../spk01.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, atomic_dir, atomic_write_text, write_audio
from workflow_scripts.files.folders import read_test_folder, read_test_signals
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.model.enhance import enhance, enhance_many
from workflow_scripts.runtime.gpu import release_gpu, resolve_device
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.runtime.memory import keep_freed_memory
from workflow_scripts.scoring.enhanced import (
    METRICS,
    merge_scores,
    read_mixture_scores,
    scoring_pool,
    start_scoring,
    summarize,
    write_score_table,
)
from workflow_scripts.scoring.nonintrusive import (
    INPUT,
    add_arguments,
    check_mos,
    give_back_device,
    make_plan,
    paired_columns,
    preload,
)

log = logging.getLogger("evaluate")

# the default padded batch on a GPU (bench/RESULTS.md, "Evaluation")
GPU_BATCH_SAMPLES = 2**20


def enhance_mixtures(model_path: str | Path, mixtures: list[np.ndarray], device: torch.device,
                     batch_samples: int, give_back: bool = True) -> list[np.ndarray]:
    """Every mixture enhanced by the checkpoint's model: in padded batches of at
    most `batch_samples` samples, or one at a time when it is 0. The model's
    memory is freed, and with `give_back` this job's GPU slot is given back, before returning."""
    model, _ = load_checkpoint(model_path)
    model.to(device)
    log.info("enhancing %d mixtures with %s on %s (%s)", len(mixtures), model_path, device,
             f"batches of <= {batch_samples} samples" if batch_samples else "one at a time")
    if batch_samples:
        enhanced = enhance_many(model, mixtures, device, max_batch_samples=batch_samples)
    else:
        enhanced = [enhance(model, m, device, matmul_decoder=True)
                    for m in tqdm(mixtures, desc="enhance", unit="utt", mininterval=5.0)]
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if give_back:
        release_gpu()
    return enhanced


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model checkpoint (.pt)")
    parser.add_argument("--test-dir", required=True, help="test folder (test.csv)")
    parser.add_argument("--out-csv", help="per-utterance metrics")
    parser.add_argument("--out-summary", help="summary JSON")
    parser.add_argument("--member", nargs=3, action="append", default=[],
                        metavar=("MODEL", "OUT_CSV", "OUT_SUMMARY"),
                        help="one of several models evaluated in this job, and its two outputs "
                             "(instead of --model, --out-csv, --out-summary)")
    parser.add_argument("--input-scores", default=None,
                        help="the mixtures' own scores (score_mixtures CSV); computed here when absent")
    parser.add_argument("--enhanced-dir", default=None,
                        help="optional folder for the enhanced wavs (one model only)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch-samples", type=int, default=None,
                        help="samples per padded enhancement batch, 0: one mixture at a time "
                             f"(default {GPU_BATCH_SAMPLES} on a GPU, 0 on the CPU)")
    parser.add_argument("--workers", "--threads", type=int, default=None, dest="workers",
                        help="processes scoring PESQ/eSTOI/DNSMOS (default: the CPUs this job may use; "
                             "--threads is its older name)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    single = [args.model, args.out_csv, args.out_summary]
    if any(single) and args.member:
        parser.error("give either --model/--out-csv/--out-summary or --member, not both")
    if args.member:
        args.members = [tuple(member) for member in args.member]
    elif all(single):
        args.members = [tuple(single)]
    else:
        parser.error("give --model, --out-csv and --out-summary, or --member MODEL OUT_CSV OUT_SUMMARY")
    outputs = [path for _, *paths in args.members for path in paths]
    if len(set(outputs)) != len(outputs):
        parser.error("two models write the same output file")
    if args.enhanced_dir and len(args.members) > 1:
        parser.error("--enhanced-dir takes the enhanced speech of one model")
    return args


MEMBER = "@"  # no score column has it: the index-th model's columns end in "@index" while scored together


def member_suffix(index: int) -> str:
    """The score columns of the index-th model while the job scores all of them together."""
    return f"{MEMBER}{index}"


def scores_of_member(extra: dict[str, list], index: int) -> dict[str, list]:
    """The index-th model's scores (its suffix removed) and the mixtures' own (shared)."""
    suffix = member_suffix(index)
    mine = {column[:-len(suffix)]: values for column, values in extra.items() if column.endswith(suffix)}
    shared = {column: values for column, values in extra.items() if MEMBER not in column}
    return {**shared, **mine}


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    workers = len(os.sched_getaffinity(0)) if args.workers is None else args.workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if args.batch_samples is not None and args.batch_samples < 0:
        raise ValueError(f"--batch-samples must be >= 0, got {args.batch_samples}")
    if args.max_utterances < 0:
        raise ValueError(f"--max-utterances must be >= 0, got {args.max_utterances}")
    table = read_test_folder(args.test_dir)
    for model, _, _ in args.members:
        if not Path(model).is_file():
            raise FileNotFoundError(f"{model}: checkpoint not found")
    nonintrusive = paired_columns(check_mos(args.mos), args.asr != "none")
    input_columns = [c for c in nonintrusive if c.endswith(INPUT) or c == "reference_words"]
    input_scores = (read_mixture_scores(args.input_scores, table, input_columns) if args.input_scores
                    else [None] * len(table))
    referenced = [bool(path) for path in table.clean_wav]
    if not all(referenced):
        log.info("%s: %d of %d mixtures have no clean reference: enhanced, and scored without one",
                 args.test_dir, referenced.count(False), len(table))

    workers = min(workers, len(table) * len(args.members))
    preload(args.mos)  # the scoring processes inherit the predictors' packages
    pool = scoring_pool(workers)
    try:
        mixtures, cleans = read_test_signals(table)
        # enhancement is a small share of the time; one thread avoids
        # multi-threaded torch stalling on cores shared with other jobs
        torch.set_num_threads(1)
        device = torch.device(resolve_device(args.device))
        if device.type == "cpu":
            keep_freed_memory()  # each mixture reuses the last one's memory (runtime.memory)
        plan = make_plan(args.mos, args.asr, table.text, args.max_utterances, str(device), args.model_dir,
                         args.whisper_model)
        batch_samples = args.batch_samples
        if batch_samples is None:
            batch_samples = GPU_BATCH_SAMPLES if device.type == "cuda" else 0
        input_mos = () if args.input_scores else plan.cpu_mos

        def tasks_of(audios: list[np.ndarray]) -> list[tuple]:
            return [(clean, mixture, audio, scores, plan.cpu_mos if chosen else (), input_mos if chosen else ())
                    for clean, mixture, audio, scores, chosen in zip(cleans, mixtures, audios, input_scores,
                                                                     plan.chosen)]

        # on the CPU nothing waits for the device: the processes score a model's speech while
        # this process enhances with the next model
        overlap = device.type == "cpu" and pool is not None
        log.info("scoring %d utterances of %d model(s) with %d process(es)%s", len(table) * len(args.members),
                 len(args.members), workers, ", each model's while the next one enhances" if overlap else "")
        enhanced, started = [], []
        for model, _, _ in args.members:
            enhanced.append(enhance_mixtures(model, mixtures, device, batch_samples, give_back=False))
            if overlap:
                started.append(start_scoring(tasks_of(enhanced[-1]), pool))
        # the mixture's own scores come from --input-scores; without them they are made here
        signals = {member_suffix(i): audios for i, audios in enumerate(enhanced)}
        signals.update({} if args.input_scores else {INPUT: mixtures})
        extra = plan.score_on_device(signals)
        give_back_device(str(device))
        if not overlap:
            started = [start_scoring([task for audios in enhanced for task in tasks_of(audios)], pool)]
        extra.update(plan.score_asr(signals))  # in this process, while the scoring processes work
        rows = [row for scored in started for row in scored]
    finally:
        if pool is not None:
            pool.shutdown()

    if args.input_scores:
        extra.update({column: [scores[column] for scores in input_scores] for column in input_columns})
    asr_column = ["asr"] if plan.asr_requested else []  # the ASR's name beside its WER
    extra.update({column: [plan.asr_name or ""] * len(table) for column in asr_column})
    results = []
    for index, (model, out_csv, out_summary) in enumerate(args.members):
        member_rows = rows[index * len(table):(index + 1) * len(table)]
        scores, models, reasons = merge_scores(member_rows, scores_of_member(extra, index), plan.wer_notes(),
                                               [*METRICS, *nonintrusive, *asr_column, "notes"])
        plan.models.update(models)
        plan.reasons.update(reasons)
        per_utterance = pd.concat([table[["mixture_id", "noise_id", "snr_db"]].reset_index(drop=True), scores],
                                  axis=1)
        results.append((model, out_csv, out_summary, per_utterance))
    if args.enhanced_dir:
        with atomic_dir(args.enhanced_dir) as tmp:
            for mixture_id, audio in zip(table.mixture_id, enhanced[0]):
                write_audio(tmp / f"{mixture_id}.wav", audio, SAMPLE_RATE)
    for model, out_csv, out_summary, per_utterance in results:
        summary = {"model": str(model), "test_dir": str(args.test_dir), **summarize(per_utterance, nonintrusive),
                   **plan.summary_fields()}
        write_score_table(out_csv, per_utterance)
        atomic_write_text(out_summary, json.dumps(summary, indent=2) + "\n")
        log_summary(model, summary, nonintrusive)


def log_summary(model: str, summary: dict, nonintrusive: list[str]) -> None:
    log.info(
        "%s: SDR %.2f -> %.2f dB (SDRi %.2f), eSTOI %.3f -> %.3f, PESQ %.2f -> %.2f; NaN: %s", model,
        *(np.nan if summary[m] is None else summary[m] for m in METRICS),
        summary["n_nan"],
    )
    for column in nonintrusive[1::2]:
        values = [summary[name] for name in (column + INPUT, column)]
        log.info("%s %s -> %s", column, *("n/a" if v is None else f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
