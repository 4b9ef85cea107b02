"""Score a speech folder against the speaker's enrollment clip: SECS and WER.

    python -m workflow_scripts.score_tts --enrollment data/demo/spk01/enrollment.wav \
        --speech-dir results/speech/worldclone/spk01 --asr auto --model-dir models \
        --out-csv results/tts_scores/worldclone/spk01.csv \
        --out-summary results/tts_scores/worldclone/spk01.json

Per utterance: the cosine similarity of its Resemblyzer embedding to the
enrollment's (`secs_resemblyzer`), the ASR transcript and its WER against the
text it was meant to say. The summary holds the mean SECS with its 95%
t-interval, the corpus-level WER (all word errors / all reference words), the
mean per-utterance WER and the name of the ASR that produced them. Without an
ASR the WER fields are empty and `asr_reason` says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.asr import ASR_CHOICES, ASRUnavailable, load_asr, normalizer_name, word_errors
from workflow_scripts.audio import SAMPLE_RATE, atomic_write_text, read_audio
from workflow_scripts.clone_voice import resolve_device
from workflow_scripts.speaker_similarity import SpeakerEncoder, cosine_similarity, mean_ci95
from workflow_scripts.training import read_speech_folder as read_manifest

log = logging.getLogger("score_tts")

EMBED_FILES_PER_BATCH = 16


def read_speech_folder(speech_dir: Path, max_utterances: int = 0) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The manifest and its utterances' audio (the first `max_utterances`, 0 for all),
    checked before any model is loaded."""
    manifest = read_manifest(speech_dir)
    if max_utterances > 0:
        manifest = manifest.head(max_utterances)
    audios = [read_audio(wav) for wav in manifest.wav]
    return manifest, audios


def score_similarity(encoder: SpeakerEncoder, enrollment: np.ndarray,
                     audios: list[np.ndarray]) -> list[float]:
    """SECS of each utterance against the enrollment clip."""
    enrollment_embedding = encoder.embed([enrollment])[0]
    scores = []
    for start in tqdm(range(0, len(audios), EMBED_FILES_PER_BATCH), desc="SECS", unit="batch"):
        for embedding in encoder.embed(audios[start:start + EMBED_FILES_PER_BATCH]):
            scores.append(cosine_similarity(enrollment_embedding, embedding))
    return scores


def transcribe_all(transcriber, manifest: pd.DataFrame, audios: list[np.ndarray]) -> pd.DataFrame:
    """asr_text, wer, word_errors, reference_words per utterance."""
    rows = []
    for text, audio in tqdm(list(zip(manifest.text, audios)), desc=f"ASR {transcriber.name}", unit="utt"):
        hypothesis = transcriber.transcribe(audio)
        errors, reference_words = word_errors(text, hypothesis)
        rows.append({"asr_text": hypothesis, "wer": errors / reference_words,
                     "word_errors": errors, "reference_words": reference_words})
    return pd.DataFrame(rows)


def open_asr(asr: str, model_dir: Path, whisper_model: str, device: str):
    """(transcriber or None, reason it is None). Explicitly requested ASRs must load."""
    if asr == "none":
        return None, "ASR disabled (--asr none)"
    try:
        return load_asr(asr, model_dir, whisper_size=whisper_model, device=device), ""
    except ASRUnavailable as exc:
        if asr != "auto":
            raise
        return None, str(exc)


def _finite_or_none(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def summarize(table: pd.DataFrame, transcriber, asr_reason: str, enrollment_wav: Path,
              speech_dir: Path) -> dict:
    """The summary JSON: SECS mean and 95% interval, corpus and mean WER, which ASR (NaN -> null)."""
    secs_mean, secs_low, secs_high = mean_ci95(table.secs_resemblyzer)
    summary = {
        "n_utterances": int(len(table)),
        "speech_dir": str(speech_dir),
        "enrollment": str(enrollment_wav),
        "secs_model": SpeakerEncoder.name,
        "secs_mean": secs_mean,
        "secs_ci95_low": secs_low,
        "secs_ci95_high": secs_high,
        "asr": transcriber.name if transcriber is not None else None,
        "asr_reason": asr_reason,
        "asr_note": getattr(transcriber, "note", "") if transcriber is not None else "",
        "text_normalizer": normalizer_name() if transcriber is not None else None,
        "wer": None,
        "wer_mean_per_utterance": None,
        "word_errors": None,
        "reference_words": None,
    }
    if transcriber is not None:
        errors, reference_words = int(table.word_errors.sum()), int(table.reference_words.sum())
        summary.update(wer=errors / reference_words, wer_mean_per_utterance=float(table.wer.mean()),
                       word_errors=errors, reference_words=reference_words)
    return {key: _finite_or_none(value) for key, value in summary.items()}


def score_tts(enrollment_wav: Path, speech_dir: Path, out_csv: Path, out_summary: Path,
              asr: str = "auto", model_dir: Path = Path("models"), whisper_model: str = "large-v3",
              device: str = "auto", max_utterances: int = 0) -> dict:
    """Check the inputs, score every utterance, write the table and the summary; returns the summary."""
    enrollment = read_audio(enrollment_wav)
    manifest, audios = read_speech_folder(speech_dir, max_utterances)
    device = resolve_device(device)
    log.info("%s: %d utterances, %.1f s; enrollment %s (%.1f s)", speech_dir, len(audios),
             sum(a.size for a in audios) / SAMPLE_RATE, enrollment_wav, enrollment.size / SAMPLE_RATE)

    transcriber, asr_reason = open_asr(asr, model_dir, whisper_model, device)

    start = time.perf_counter()
    encoder = SpeakerEncoder(device=device)
    secs = score_similarity(encoder, enrollment, audios)
    log.info("SECS (%s on %s): %.3f s per utterance", encoder.name, device,
             (time.perf_counter() - start) / len(audios))

    table = manifest[["utt_id", "text", "duration_s"]].copy()
    table["secs_resemblyzer"] = secs
    if transcriber is None:
        log.warning("no WER: %s", asr_reason)
        for column in ("asr_text", "wer", "word_errors", "reference_words", "asr"):
            table[column] = None
    else:
        start = time.perf_counter()
        table = pd.concat([table, transcribe_all(transcriber, manifest, audios)], axis=1)
        table["asr"] = transcriber.name
        log.info("ASR %s (normaliser %s): %.3f s per utterance", transcriber.name, normalizer_name(),
                 (time.perf_counter() - start) / len(audios))

    summary = summarize(table, transcriber, asr_reason, enrollment_wav, speech_dir)
    atomic_write_text(out_csv, table.to_csv(index=False))
    atomic_write_text(out_summary, json.dumps(summary, indent=2) + "\n")
    log.info("summary: %s", json.dumps(summary))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollment", required=True, type=Path, help="the speaker's enrollment clip (wav)")
    parser.add_argument("--speech-dir", required=True, type=Path,
                        help="speech folder to score (manifest.csv)")
    parser.add_argument("--asr", default="auto", choices=ASR_CHOICES)
    parser.add_argument("--whisper-model", default="large-v3", help="Whisper size (when Whisper is used)")
    parser.add_argument("--model-dir", default=Path("models"), type=Path,
                        help="model caches (Whisper weights under whisper/)")
    parser.add_argument("--out-csv", required=True, type=Path, help="per-utterance scores")
    parser.add_argument("--out-summary", required=True, type=Path, help="summary JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-utterances", type=int, default=0,
                        help="score only the first N utterances of the folder (0: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    score_tts(args.enrollment, args.speech_dir, args.out_csv, args.out_summary, asr=args.asr,
              model_dir=args.model_dir, whisper_model=args.whisper_model, device=args.device,
              max_utterances=args.max_utterances)
    return 0


if __name__ == "__main__":
    sys.exit(main())
