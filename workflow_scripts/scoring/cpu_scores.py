"""The scores of a speech folder that need only the CPU: Resemblyzer SECS and the CPU MOS predictors.

score_tts computes them itself, or (`tts_scoring.cpu_job: true`) reads them from the file of a
CPU job of their own, score_tts_cpu, so that a score_tts job holding a GPU slot runs only the
device models (Whisper, the x-vector, UTMOS, DistillMOS). This module owns that file, one JSON:

    {"utterances": ["utt0", ...],                  # the scored utterances, in the folder's order
     "scores": {"secs_resemblyzer": [...], "dnsmos_ovrl": [...], ...},   # null: no score
     "models": {"dnsmos": "dnsmos p835 ..."},      # the CPU predictors that ran
     "reasons": {"utmos": "..."}}                  # those that did not load, and why
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.runtime.logs import timed
from workflow_scripts.scoring.mos import PREDICTORS, load_predictors
from workflow_scripts.scoring.speaker_similarity import SpeakerEncoder, similarity_to_enrollment

log = logging.getLogger(__name__)

CPU_MOS = tuple(name for name, predictor in PREDICTORS.items() if not predictor.uses_gpu)
SECS_COLUMN = "secs_resemblyzer"


def cpu_mos(names) -> list[str]:
    """The CPU predictors among `names`, in their order."""
    return [name for name in names if name in CPU_MOS]


@dataclass
class CpuScores:
    utterances: list[str]
    scores: dict[str, list[float]]  # column -> one value per utterance (NaN: none)
    models: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def score_on_cpu(enrollment: np.ndarray, audios: list[np.ndarray], utterances: list[str], mos,
                 threads: int = 1) -> CpuScores:
    """Resemblyzer SECS of each utterance against the enrollment and the CPU predictors of `mos`
    (one that cannot load: NaN and its reason)."""
    names = cpu_mos(mos)
    predictors, reasons = load_predictors(names, device="cpu", onnx_threads=threads)
    encoder = SpeakerEncoder(device="cpu")
    scores = {SECS_COLUMN: timed(f"SECS ({encoder.name}, CPU)", len(audios), similarity_to_enrollment, encoder,
                                 enrollment, audios, desc="SECS resemblyzer")}
    for name in names:
        predictor = predictors.get(name)
        if predictor is None:
            scores.update({column: [math.nan] * len(audios) for column in PREDICTORS[name].columns})
        else:
            scores.update(timed(f"MOS {predictor.model_name}", len(audios), predictor.predict, audios))
    models = {name: predictor.model_name for name, predictor in predictors.items()}
    return CpuScores(list(utterances), {k: [float(v) for v in values] for k, values in scores.items()},
                     models, reasons)


def write_cpu_scores(scores: CpuScores, path: Path) -> None:
    def value(v: float):
        return v if math.isfinite(v) else None

    atomic_write_text(path, json.dumps({
        "utterances": scores.utterances,
        "scores": {column: [value(v) for v in values] for column, values in scores.scores.items()},
        "models": scores.models,
        "reasons": scores.reasons,
    }, indent=1) + "\n")


def read_cpu_scores(path: Path, utterances: list[str], mos) -> CpuScores:
    """The file at `path`, checked against the utterances about to be scored and the CPU
    predictors of `mos`; a file that does not match is an error naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        scores = {column: [math.nan if v is None else float(v) for v in values]
                  for column, values in data["scores"].items()}
        found = CpuScores(list(data["utterances"]), scores, dict(data["models"]), dict(data["reasons"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a CPU score file of score_tts_cpu ({exc})") from exc
    if found.utterances != list(utterances):
        raise ValueError(f"{path}: scores {len(found.utterances)} utterances that are not the {len(utterances)} "
                         "about to be scored (another folder or --max-utterances): run score_tts_cpu again")
    needed = [SECS_COLUMN] + [column for name in cpu_mos(mos) for column in PREDICTORS[name].columns]
    missing = [column for column in needed if column not in found.scores]
    missing += [name for name in cpu_mos(mos) if name not in found.models and name not in found.reasons]
    if missing:
        raise ValueError(f"{path}: has no {', '.join(missing)} (made with another --mos): run score_tts_cpu again")
    wrong = [column for column, values in found.scores.items() if len(values) != len(found.utterances)]
    if wrong:
        raise ValueError(f"{path}: {', '.join(wrong)} do not have one value per utterance")
    return found
