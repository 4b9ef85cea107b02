"""Synthesize a speaker's sentences with a TTS system into a speech folder.

    python -m workflow_scripts.synthesize --backend world_clone --options-json '{}' \
        --voice results/voices/worldclone/spk01.pt --sentences data/demo/spk01/sentences.txt \
        --num-utterances 44 --speaker spk01 --tts worldclone --seed 0 \
        --out-dir results/speech/worldclone/spk01

The first N sentences are rendered in order (the folder's row order is the
order of use), resampled once to 16 kHz and peak-normalised. Each utterance
has its own seed, derived from (seed, speaker, tts, utterance index, attempt),
so a rerun reproduces the same audio. An utterance whose synthesis raises, or
returns empty, silent or non-finite audio, is retried with a new seed; one
that still fails is skipped and listed in `failures.csv`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, atomic_dir, peak_normalize, resample
from workflow_scripts.files.folders import write_failure_table, write_speech_folder
from workflow_scripts.files.sentences import read_sentence_file
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.tts import TTSBackend, add_backend_args, load_backend, parse_options
from workflow_scripts.tts.voice import read_voice

log = logging.getLogger("synthesize")

SILENCE_PEAK = 1e-4  # an output whose peak |x| is below this counts as silent


def read_sentences(sentences_txt: Path, num_utterances: int) -> list[str]:
    """The first `num_utterances` sentences of a speaker's sentences file (checked as
    files.sentences reads it), white space folded; fails if there are fewer."""
    sentences = [" ".join(line.split()) for line in read_sentence_file(sentences_txt)]
    if len(sentences) < num_utterances:
        raise ValueError(
            f"{sentences_txt}: has {len(sentences)} non-empty lines, "
            f"fewer than the {num_utterances} utterances requested (--num-utterances)"
        )
    return sentences[:num_utterances]


def utterance_seed(seed: int, speaker: str, tts: str, utt_index: int, attempt: int = 0) -> int:
    """A 31-bit seed that depends only on its arguments (stable across runs and machines)."""
    key = f"{seed}|{speaker}|{tts}|{utt_index}|{attempt}"
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


def check_output(audio, sample_rate: int) -> tuple[np.ndarray | None, str]:
    """(16 kHz peak-normalised audio, "") for a usable output, else (None, reason)."""
    audio = np.asarray(audio, dtype=np.float32).squeeze()
    if audio.ndim != 1:
        return None, f"output has shape {audio.shape}, expected mono"
    if audio.size == 0:
        return None, "empty output"
    if not np.all(np.isfinite(audio)):
        return None, "output contains NaN or Inf"
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        return None, "silent output"
    audio = resample(audio, sample_rate, SAMPLE_RATE)
    return peak_normalize(audio), ""


def synthesize_chunk(backend: TTSBackend, conditioning: dict, texts: list[str],
                     seeds: list[int]) -> list[tuple[np.ndarray | None, str]]:
    """One attempt at a chunk: (audio, "") or (None, reason) per text.

    If the batch call raises, each text is tried alone, so that one bad
    utterance does not change the seeds of its neighbours.
    """
    try:
        outputs = backend.synthesize_batch(texts, conditioning, seeds)
        if len(outputs) != len(texts):
            raise RuntimeError(f"synthesize_batch returned {len(outputs)} outputs for {len(texts)} texts")
    except Exception as exc:
        if len(texts) == 1:
            return [(None, f"{type(exc).__name__}: {exc}")]
        log.warning("batch of %d failed (%s: %s); trying its utterances one by one", len(texts),
                    type(exc).__name__, exc)
        return [synthesize_chunk(backend, conditioning, [text], [seed])[0]
                for text, seed in zip(texts, seeds)]
    return [check_output(audio, backend.sample_rate) for audio in outputs]


def synthesize_all(backend: TTSBackend, conditioning: dict, sentences: list[str], seed: int,
                   speaker: str, tts: str, max_retries: int, batch_size: int):
    """Render every sentence; returns ({index: (audio, seed)}, [failure rows])."""
    results: dict[int, tuple[np.ndarray, int]] = {}
    failures = []
    with tqdm(total=len(sentences), desc=f"synthesize {tts}/{speaker}", unit="utt") as progress:
        for start in range(0, len(sentences), batch_size):
            pending = list(range(start, min(start + batch_size, len(sentences))))
            reasons: dict[int, str] = {}
            for attempt in range(max_retries + 1):
                if not pending:
                    break
                seeds = [utterance_seed(seed, speaker, tts, i, attempt) for i in pending]
                outcomes = synthesize_chunk(backend, conditioning, [sentences[i] for i in pending], seeds)
                still_pending = []
                for i, utt_seed, (audio, reason) in zip(pending, seeds, outcomes):
                    if audio is None:
                        reasons[i] = reason
                        still_pending.append(i)
                        log.warning("utterance %d attempt %d (seed %d) failed: %s",
                                    i, attempt, utt_seed, reason)
                    else:
                        results[i] = (audio, utt_seed)
                        if attempt > 0:
                            log.info("utterance %d succeeded on retry %d (seed %d)", i, attempt, utt_seed)
                pending = still_pending
            for i in pending:
                failures.append({"utt_index": i, "text": sentences[i], "reason": reasons[i]})
                log.error("utterance %d skipped after %d attempts: %s", i, max_retries + 1, reasons[i])
            progress.update(min(batch_size, len(sentences) - start))
    return results, failures


def write_synthesized_folder(out_dir: Path, sentences: list[str], results: dict, failures: list[dict],
                             speaker: str, tts: str) -> pd.DataFrame:
    """manifest.csv (utt_id,path,text,duration_s,seed) + wavs + failures.csv, atomically."""
    rows = [
        {"utt_id": f"{speaker}_{tts}_{i:04d}", "audio": results[i][0], "text": sentences[i], "seed": results[i][1]}
        for i in sorted(results)
    ]
    with atomic_dir(out_dir) as tmp:
        manifest = write_speech_folder(tmp, rows, duration_decimals=6, extra_columns=("seed",))
        write_failure_table(tmp, failures)
    return manifest


def synthesize(backend_name: str, options: dict, voice_pt: Path, sentences_txt: Path, num_utterances: int,
               speaker: str, tts: str, seed: int, out_dir: Path, device: str = "auto", max_retries: int = 3,
               min_utterances: int | None = None, batch_size: int = 8,
               model_dir: Path | None = None) -> pd.DataFrame:
    """Check the inputs, load the backend once, render, and write the speech folder."""
    min_utterances = num_utterances if min_utterances is None else min_utterances
    if not 0 <= min_utterances <= num_utterances:
        raise ValueError(f"--min-utterances must be in [0, {num_utterances}], got {min_utterances}")
    if batch_size < 1 or max_retries < 0:
        raise ValueError("--batch-size must be >= 1 and --max-retries >= 0")
    sentences = read_sentences(sentences_txt, num_utterances)
    voice = read_voice(voice_pt, backend_name)
    if voice["options"] != options:
        made_with, asked = json.dumps(voice["options"], sort_keys=True), json.dumps(options, sort_keys=True)
        raise ValueError(f"{voice_pt}: conditioning was made with options {made_with}, "
                         f"not {asked} (--options-json): clone the voice again")
    backend = load_backend(backend_name, options, device, model_dir)
    log.info("backend %s on %s: %d utterances of %s, seed %d, batches of %d",
             backend_name, backend.device, num_utterances, sentences_txt, seed, batch_size)
    results, failures = synthesize_all(backend, voice["conditioning"], sentences, seed, speaker, tts,
                                       max_retries, batch_size)
    if len(results) < min_utterances:
        raise RuntimeError(
            f"only {len(results)} of {num_utterances} utterances of {sentences_txt} could be synthesized, "
            f"fewer than --min-utterances {min_utterances}; failures: "
            + "; ".join(f"#{f['utt_index']}: {f['reason']}" for f in failures)
        )
    manifest = write_synthesized_folder(out_dir, sentences, results, failures, speaker, tts)
    log.info("wrote %s: %d utterances, %.1f s of speech, %d skipped", out_dir, len(manifest),
             manifest.duration_s.sum(), len(failures))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_args(parser)
    parser.add_argument("--voice", required=True, type=Path, help="conditioning file from clone_voice (.pt)")
    parser.add_argument("--sentences", required=True, type=Path, help="sentences file, one per line")
    parser.add_argument("--num-utterances", required=True, type=int, help="render the first N sentences")
    parser.add_argument("--speaker", required=True, help="speaker id (utterance ids and seeds)")
    parser.add_argument("--tts", required=True, help="TTS system name (utterance ids and seeds)")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--max-retries", type=int, default=3, help="new-seed retries per failed utterance")
    parser.add_argument("--min-utterances", type=int, default=None,
                        help="fail if fewer utterances succeed (default: --num-utterances)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts per synthesize_batch call")
    parser.add_argument("--out-dir", required=True, type=Path, help="speech folder to write")
    args = parser.parse_args(argv)
    setup_logging()
    synthesize(args.backend, parse_options(args.options_json), args.voice, args.sentences,
               args.num_utterances, args.speaker, args.tts, args.seed, args.out_dir, device=args.device,
               max_retries=args.max_retries, min_utterances=args.min_utterances, batch_size=args.batch_size,
               model_dir=args.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
