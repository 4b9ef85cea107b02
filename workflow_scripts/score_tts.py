"""Score a speech folder against the speaker's enrollment clip: SECS, WER and predicted MOS.

    python -m workflow_scripts.score_tts --enrollment data/demo/spk01/enrollment.wav \
        --speech-dir results/speech/worldclone/spk01 --asr auto --whisper-model large-v3 \
        --secs-xvector-model speechbrain/spkrec-xvect-voxceleb --mos utmos dnsmos distillmos \
        --model-dir models --out-csv results/tts_scores/worldclone/spk01.csv \
        --out-summary results/tts_scores/worldclone/spk01.json

Per utterance, as the GenDA challenge scored its TTS data:
- SECS, the cosine similarity of its speaker embedding to the enrollment's,
  with Resemblyzer (`secs_resemblyzer`, always available) and with the
  speechbrain x-vector the challenge used (`secs_xvector`);
- the ASR transcript and its WER against the text it was meant to say
  (Whisper large-v3 in the challenge; both sides through Whisper's English
  normaliser, jiwer);
- predicted MOS: UTMOS (`utmos`), DNSMOS (`dnsmos_*`), DistillMOS (`distillmos`).

The summary holds each score's mean and 95% t-interval, the corpus-level WER
(all word errors / all reference words) and the mean per-utterance WER, and
names every model. A score whose model cannot be loaded here (weights not in
`--model-dir`: nothing is downloaded while scoring) stays empty, and its
`*_reason` field says why. Each model is loaded once per job.

With `--cpu-scores`, Resemblyzer SECS and DNSMOS come from the file of the folder's score_tts_cpu
job (`tts_scoring.cpu_job`) instead of running here: on a GPU, the job then holds its slot only
while the device models run.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.scoring.asr import ASR_CHOICES, ASRUnavailable, load_asr, normalizer_name, word_errors
from workflow_scripts.files.audio import SAMPLE_RATE, atomic_write_text, read_audio
from workflow_scripts.runtime.gpu import release_gpu, resolve_device
from workflow_scripts.runtime.logs import setup_logging, timed
from workflow_scripts.runtime.model_cache import WHISPER_MODEL
from workflow_scripts.scoring.cpu_scores import CPU_MOS, SECS_COLUMN, read_cpu_scores
from workflow_scripts.scoring.mos import MOS_CHOICES, PREDICTORS, UTMOS_HUB_REPO, load_predictors
from workflow_scripts.scoring.speaker_similarity import (
    XVECTOR_DEFAULT_SOURCE,
    SpeakerEncoder,
    load_xvector_encoder,
    mean_ci95,
    similarity_to_enrollment,
)
from workflow_scripts.files.folders import read_speech_signals

log = logging.getLogger("score_tts")

ASR_COLUMNS = ("asr_text", "wer", "word_errors", "reference_words", "asr")


def transcribe_all(transcriber, manifest: pd.DataFrame, audios: list[np.ndarray]) -> pd.DataFrame:
    """asr_text, wer, word_errors, reference_words per utterance (transcribed in the ASR's batches)."""
    hypotheses = []
    with tqdm(total=len(audios), desc=f"ASR {transcriber.name}", unit="utt") as progress:
        for start in range(0, len(audios), transcriber.batch_size):
            batch = audios[start:start + transcriber.batch_size]
            hypotheses += transcriber.transcribe_batch(batch)
            progress.update(len(batch))
    rows = []
    for text, hypothesis in zip(manifest.text, hypotheses):
        errors, reference_words = word_errors(text, hypothesis)
        rows.append({"asr_text": hypothesis, "wer": errors / reference_words,
                     "word_errors": errors, "reference_words": reference_words})
    return pd.DataFrame(rows)


def open_asr(asr: str, model_dir: Path, whisper_model: str, device: str, temperature_fallback: bool = True):
    """(transcriber or None, reason it is None). Explicitly requested ASRs must load."""
    if asr == "none":
        return None, "ASR disabled (--asr none)"
    try:
        return load_asr(asr, model_dir, whisper_model=whisper_model, device=device,
                        temperature_fallback=temperature_fallback), ""
    except ASRUnavailable as exc:
        if asr != "auto":
            raise
        return None, str(exc)


def _finite_or_none(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _mean_fields(prefix: str, values) -> dict:
    """{prefix_mean, prefix_ci95_low, prefix_ci95_high} of the finite values (NaN when none)."""
    mean, low, high = mean_ci95(pd.to_numeric(pd.Series(values), errors="coerce").dropna())
    return {f"{prefix}_mean": mean, f"{prefix}_ci95_low": low, f"{prefix}_ci95_high": high}


def summarize(table: pd.DataFrame, transcriber, asr_reason: str, enrollment_wav: Path, speech_dir: Path,
              xvector_source: str = "", xvector_reason: str = "", mos_models: dict | None = None,
              mos_reasons: dict | None = None) -> dict:
    """The summary JSON: every score's mean and 95% interval, corpus and mean WER, the model behind
    each score and why a score is missing (NaN -> null)."""
    mos_models, mos_reasons = mos_models or {}, mos_reasons or {}
    secs = _mean_fields("secs_resemblyzer", table.secs_resemblyzer)
    summary = {
        "n_utterances": len(table),
        "speech_dir": str(speech_dir),
        "enrollment": str(enrollment_wav),
        # the Resemblyzer SECS under its first names, which older tables read
        "secs_model": SpeakerEncoder.name,
        "secs_mean": secs["secs_resemblyzer_mean"],
        "secs_ci95_low": secs["secs_resemblyzer_ci95_low"],
        "secs_ci95_high": secs["secs_resemblyzer_ci95_high"],
        "secs_resemblyzer_model": SpeakerEncoder.name,
        **secs,
        "secs_xvector_model": xvector_source or None,
        **_mean_fields("secs_xvector", table.secs_xvector),
        "secs_xvector_reason": xvector_reason,
        "asr": transcriber.name if transcriber is not None else None,
        "asr_reason": asr_reason,
        "asr_note": getattr(transcriber, "note", "") if transcriber is not None else "",
        "text_normalizer": normalizer_name() if transcriber is not None else None,
        "wer": None,
        "wer_mean_per_utterance": None,
        "wer_ci95_low": None,
        "wer_ci95_high": None,
        "word_errors": None,
        "reference_words": None,
    }
    if transcriber is not None:
        errors, reference_words = int(table.word_errors.sum()), int(table.reference_words.sum())
        wer_mean, wer_low, wer_high = mean_ci95(table.wer.astype(float))
        summary.update(wer=errors / reference_words, wer_mean_per_utterance=wer_mean,
                       wer_ci95_low=wer_low, wer_ci95_high=wer_high,
                       word_errors=errors, reference_words=reference_words)
    for name, predictor_class in PREDICTORS.items():
        summary[f"{name}_model"] = mos_models.get(name)
        for column in predictor_class.columns:
            summary.update(_mean_fields(column, table[column]))
        summary[f"{name}_reason"] = mos_reasons.get(name, "")
    return {key: _finite_or_none(value) for key, value in summary.items()}


def score_tts(enrollment_wav: Path, speech_dir: Path, out_csv: Path, out_summary: Path,
              asr: str = "auto", model_dir: Path = Path("models"), whisper_model: str = WHISPER_MODEL,
              device: str = "auto", max_utterances: int = 0, secs_xvector_model: str = XVECTOR_DEFAULT_SOURCE,
              utmos_model: str = UTMOS_HUB_REPO, mos: tuple[str, ...] = MOS_CHOICES,
              whisper_temperature_fallback: bool = True, cpu_scores: Path | None = None) -> dict:
    """Check the inputs, load every model once, score every utterance, write the table and the
    summary; returns the summary. `cpu_scores`: score_tts_cpu's file for these utterances, whose
    scores are read instead of computed."""
    unknown = [name for name in mos if name not in MOS_CHOICES]
    if unknown:
        raise ValueError(f"unknown MOS predictor(s) {', '.join(unknown)}; choose from {', '.join(MOS_CHOICES)}")
    enrollment = read_audio(enrollment_wav)
    manifest, audios = read_speech_signals(speech_dir, max_utterances)
    from_cpu_job = read_cpu_scores(cpu_scores, list(manifest.utt_id), mos) if cpu_scores else None
    device = resolve_device(device)
    log.info("%s: %d utterances, %.1f s; enrollment %s (%.1f s)", speech_dir, len(audios),
             sum(a.size for a in audios) / SAMPLE_RATE, enrollment_wav, enrollment.size / SAMPLE_RATE)

    # every model first, so that a model named explicitly but missing stops the job before any work
    start = time.perf_counter()
    transcriber, asr_reason = open_asr(asr, model_dir, whisper_model, device, whisper_temperature_fallback)
    resemblyzer = SpeakerEncoder(device=device) if from_cpu_job is None else None
    xvector_encoder, xvector_reason = load_xvector_encoder(secs_xvector_model, model_dir, device)
    here = [name for name in mos if from_cpu_job is None or name not in CPU_MOS]
    # DNSMOS (onnxruntime) on the job's threads, as torch's ops: its default, one thread a core,
    # competes with the jobs beside this one
    predictors, mos_reasons = load_predictors(here, utmos_model, model_dir, device, onnx_threads=torch_threads())
    for name in MOS_CHOICES:
        if name not in mos:
            mos_reasons[name] = f"not run (not in --mos {' '.join(mos) or 'none'})"
    log.info("models loaded on %s in %.1f s", device, time.perf_counter() - start)

    table = manifest[["utt_id", "text", "duration_s"]].copy()
    if from_cpu_job is None:
        table[SECS_COLUMN] = timed(f"SECS ({resemblyzer.name})", len(audios), similarity_to_enrollment,
                                   resemblyzer, enrollment, audios, desc="SECS resemblyzer")
    else:
        table[SECS_COLUMN] = from_cpu_job.scores[SECS_COLUMN]
        mos_reasons.update(from_cpu_job.reasons)
        log.info("SECS (%s) and %s read from %s", SpeakerEncoder.name,
                 ", ".join(from_cpu_job.models) or "no CPU MOS", cpu_scores)
    if xvector_encoder is None:
        log.warning("no x-vector SECS: %s", xvector_reason)
        table["secs_xvector"] = np.nan
    else:
        table["secs_xvector"] = timed(f"SECS (x-vector {secs_xvector_model})", len(audios),
                                      similarity_to_enrollment, xvector_encoder, enrollment, audios,
                                      desc="SECS x-vector")
    if transcriber is None:
        log.warning("no WER: %s", asr_reason)
        for column in ASR_COLUMNS:
            table[column] = None
    else:
        scores = timed(f"ASR {transcriber.name} (normaliser {normalizer_name()})", len(audios),
                       transcribe_all, transcriber, manifest, audios)
        table = pd.concat([table, scores], axis=1)
        table["asr"] = transcriber.name
        if getattr(transcriber, "calls_to_transcribe", 0):
            log.info("%d of %d utterances needed whisper.transcribe after the batched pass",
                     transcriber.calls_to_transcribe, len(audios))
    for predictor_class in PREDICTORS.values():
        for column in predictor_class.columns:
            from_file = from_cpu_job is not None and column in from_cpu_job.scores
            table[column] = from_cpu_job.scores[column] if from_file else np.nan
    mos_models = {name: predictor.model_name for name, predictor in predictors.items()}
    if from_cpu_job is not None:
        mos_models.update(from_cpu_job.models)
    cpu_only = {name: predictor for name, predictor in predictors.items() if not predictor.uses_gpu}

    def predict_mos(predictor) -> None:
        scores = timed(f"MOS {predictor.model_name}", len(audios), predictor.predict, audios)
        for column, values in scores.items():
            table[column] = values

    for name, predictor in predictors.items():
        if name not in cpu_only:
            predict_mos(predictor)
    if cpu_only and device != "cpu":
        # the device's part is done: its memory and slot go to other jobs before the CPU-only
        # predictors (DNSMOS) run; the summary needs only the ASR's name and note
        if transcriber is not None:
            transcriber = SimpleNamespace(name=transcriber.name, note=getattr(transcriber, "note", ""))
        resemblyzer = xvector_encoder = predictors = predictor = None
        give_back_device(device)
    for predictor in cpu_only.values():
        predict_mos(predictor)

    summary = summarize(table, transcriber, asr_reason, enrollment_wav, speech_dir,
                        xvector_source=secs_xvector_model if secs_xvector_model != "none" else "",
                        xvector_reason=xvector_reason, mos_models=mos_models, mos_reasons=mos_reasons)
    atomic_write_text(out_csv, table.to_csv(index=False))
    atomic_write_text(out_summary, json.dumps(summary, indent=2) + "\n")
    log.info("summary: %s", json.dumps(summary))
    return summary


def torch_threads() -> int:
    """torch's intra-op threads in this process (the job's, from OMP_NUM_THREADS)."""
    import torch

    return torch.get_num_threads()


def give_back_device(device: str) -> None:
    """Free the GPU memory of the models no longer referenced and release the GPU slot."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    release_gpu()
    log.info("GPU work done: memory and slot released; the rest runs on the CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollment", required=True, type=Path, help="the speaker's enrollment clip (wav)")
    parser.add_argument("--speech-dir", required=True, type=Path,
                        help="speech folder to score (manifest.csv)")
    parser.add_argument("--asr", default="auto", choices=ASR_CHOICES)
    parser.add_argument("--whisper-model", default=WHISPER_MODEL,
                        help="Whisper size, read from MODEL_DIR/whisper (the challenge: large-v3), "
                             "or the path of a Whisper checkpoint file")
    parser.add_argument("--whisper-temperature-fallback", default=True, action=argparse.BooleanOptionalAction,
                        help="retry an utterance at higher temperatures as whisper.transcribe does "
                             "(--no-whisper-temperature-fallback: greedy only)")
    parser.add_argument("--secs-xvector-model", default=XVECTOR_DEFAULT_SOURCE,
                        help="speechbrain x-vector model: hub id (read from MODEL_DIR/speechbrain), "
                             "local model folder, or none")
    parser.add_argument("--mos", nargs="*", default=list(MOS_CHOICES), choices=MOS_CHOICES, metavar="PREDICTOR",
                        help=f"MOS predictors to run, any of {', '.join(MOS_CHOICES)} (default: all; "
                             "none given: no MOS)")
    parser.add_argument("--utmos-model", default=UTMOS_HUB_REPO,
                        help="UTMOS22 weights: hub repo id (read from MODEL_DIR/huggingface), "
                             "a utmos_state_dict.pt file, or a folder holding it")
    parser.add_argument("--model-dir", default=Path("models"), type=Path,
                        help="model caches (workflow_scripts.runtime.model_cache): nothing is downloaded while scoring")
    parser.add_argument("--out-csv", required=True, type=Path, help="per-utterance scores")
    parser.add_argument("--out-summary", required=True, type=Path, help="summary JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-utterances", type=int, default=0,
                        help="score only the first N utterances of the folder (0: all)")
    parser.add_argument("--cpu-scores", type=Path, default=None,
                        help="score_tts_cpu's file for this folder: its Resemblyzer SECS and DNSMOS are read, "
                             "not computed")
    args = parser.parse_args(argv)
    setup_logging()
    score_tts(args.enrollment, args.speech_dir, args.out_csv, args.out_summary, asr=args.asr,
              model_dir=args.model_dir, whisper_model=args.whisper_model, device=args.device,
              max_utterances=args.max_utterances, secs_xvector_model=args.secs_xvector_model,
              utmos_model=args.utmos_model, mos=tuple(args.mos),
              whisper_temperature_fallback=args.whisper_temperature_fallback, cpu_scores=args.cpu_scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
