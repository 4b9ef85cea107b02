"""Estimate a TTS system's voice conditioning from one enrollment clip.

    python -m workflow_scripts.clone_voice --backend world_clone --options-json '{}' \
        --enrollment data/demo/spk01/enrollment.wav --out results/voices/worldclone/spk01.pt

The enrollment clip is the only thing a TTS system may see of the target
speaker (with, for a backend conditioned on what the clip says, its transcript:
--enrollment-text from the speaker sheet, else the ASR --asr transcribes it).
The conditioning is computed once and saved as a voice file
(`workflow_scripts.tts.voice`), which the synthesis step reads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, read_audio
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.runtime.model_cache import WHISPER_MODEL
from workflow_scripts.tts import BACKENDS, EnrollmentText, add_backend_args, load_backend, parse_options
from workflow_scripts.tts.voice import write_voice

log = logging.getLogger("clone_voice")


def read_enrollment(enrollment_wav: Path, min_enrollment_s: float) -> np.ndarray:
    """The enrollment clip at 16 kHz, checked to be long enough and not silent."""
    enrollment = read_audio(enrollment_wav)
    duration_s = enrollment.size / SAMPLE_RATE
    if duration_s < min_enrollment_s:
        raise AudioError(
            f"{enrollment_wav}: enrollment clip is {duration_s:.2f} s long, "
            f"shorter than the minimum of {min_enrollment_s:.2f} s (--min-enrollment-s)"
        )
    if float(np.max(np.abs(enrollment))) == 0.0:
        raise AudioError(f"{enrollment_wav}: enrollment clip is silent")
    return enrollment


def describe(conditioning: dict) -> str:
    """One short line per conditioning entry, for the log."""
    lines = []
    for key, value in conditioning.items():
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0:
            lines.append(f"  {key}: array of shape {tuple(shape)}")
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            lines.append(f"  {key}: sequence of {len(value)} values")
        else:
            lines.append(f"  {key}: {value!r}")
    return "\n".join(lines) if lines else "  (empty)"


def clone_voice(backend_name: str, options: dict, enrollment_wav: Path, out: Path,
                device: str = "auto", min_enrollment_s: float = 2.0, model_dir: Path | None = None,
                enrollment_text: EnrollmentText | None = None) -> dict:
    """Compute and save the conditioning; returns what was saved. `enrollment_text` reaches
    the backends registered with `transcript` (default: transcribed by `asr: auto`)."""
    extra = {}
    if backend_name in BACKENDS and BACKENDS[backend_name].transcript:
        extra["enrollment_text"] = enrollment_text or EnrollmentText()
        if extra["enrollment_text"].problem():
            raise ValueError(f"{enrollment_wav}: {backend_name}: {extra['enrollment_text'].problem()}")
    enrollment = read_enrollment(enrollment_wav, min_enrollment_s)
    log.info("enrollment %s: %.2f s", enrollment_wav, enrollment.size / SAMPLE_RATE)
    backend = load_backend(backend_name, options, device, model_dir)
    log.info("backend %s on %s, options %s", backend_name, backend.device,
             json.dumps(options, sort_keys=True))
    conditioning = backend.compute_conditioning(enrollment, SAMPLE_RATE, **extra)
    log.info("estimated conditioning:\n%s", describe(conditioning))
    record = {
        "backend": backend_name,
        "options": options,
        "conditioning": conditioning,
        "enrollment": {"path": str(enrollment_wav), "duration_s": enrollment.size / SAMPLE_RATE},
    }
    write_voice(record, out)
    log.info("wrote %s", out)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_args(parser)
    parser.add_argument("--enrollment", required=True, type=Path, help="enrollment clip (wav)")
    parser.add_argument("--out", required=True, type=Path, help="conditioning file (.pt)")
    parser.add_argument("--min-enrollment-s", type=float, default=2.0,
                        help="refuse enrollment clips shorter than this (seconds)")
    parser.add_argument("--enrollment-text", default="",
                        help="what the enrollment clip says (backends conditioned on it; empty: --asr transcribes)")
    parser.add_argument("--asr", default="auto", choices=["auto", "whisper", "pocketsphinx", "none"],
                        help="the ASR that transcribes the clip when --enrollment-text is empty")
    parser.add_argument("--whisper-model", default=WHISPER_MODEL, help="Whisper size or checkpoint for --asr")
    args = parser.parse_args(argv)
    setup_logging()
    clone_voice(args.backend, parse_options(args.options_json), args.enrollment, args.out,
                device=args.device, min_enrollment_s=args.min_enrollment_s, model_dir=args.model_dir,
                enrollment_text=EnrollmentText(args.enrollment_text, args.asr, args.whisper_model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
