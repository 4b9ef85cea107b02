"""Scores of speech that need no clean reference: predicted MOS and the WER of an ASR.

- MOS: DNSMOS P.835 (columns `dnsmos_sig`, `dnsmos_bak`, `dnsmos_ovrl`) and DistillMOS
  (`distillmos`), by scoring.mos's predictors: the numbers they give called directly on the
  same audio.
- WER: the ASR's transcript against what the mixture's speaker says (test.csv `text`), per
  utterance: `wer` (word errors / reference words, both sides normalised as for the TTS WER)
  and `reference_words`; NaN, with the note "wer: no transcript", where the text is not known.

The mixture's own scores carry `_in` (`dnsmos_ovrl_in`, `wer_in`). With `max_utterances` > 0
only that many mixtures are scored, spread evenly over the test set (`chosen`), the same ones
for the mixture and for every model; the others are NaN, without a note.

Where each runs (`Plan`): on a GPU, the predictors that use one (DistillMOS) and Whisper,
before the job gives the GPU back; DNSMOS (onnxruntime), and every predictor of a job on the
CPU, in the scoring processes, each of which loads its predictors once, with one thread (the
processes are the parallelism); pocketsphinx, and Whisper on the CPU, in the job's own process
while those score. A predictor or an ASR that cannot load leaves its columns NaN and says why.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from workflow_scripts.runtime.model_cache import WHISPER_MODEL
from workflow_scripts.scoring.asr import ASR_CHOICES, ASRUnavailable, load_asr, normalizer_name, word_errors
from workflow_scripts.scoring.mos import PREDICTORS, load_predictors

log = logging.getLogger(__name__)

MOS_COLUMNS = {"dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"), "distillmos": ("distillmos",)}
MOS_CHOICES = tuple(MOS_COLUMNS)
INPUT = "_in"  # the suffix of the mixture's own scores
NO_TRANSCRIPT = "wer: no transcript"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A step's options of the scores that need no reference (evaluate, score_mixtures)."""
    group = parser.add_argument_group("scores without a reference")
    group.add_argument("--mos", nargs="*", choices=MOS_CHOICES, default=[],
                       help=f"MOS predictors, of {', '.join(MOS_CHOICES)} (default: none)")
    group.add_argument("--asr", choices=ASR_CHOICES, default="none",
                       help="ASR for the WER against test.csv's text (default: none)")
    group.add_argument("--whisper-model", default=WHISPER_MODEL, help="Whisper size or checkpoint file")
    group.add_argument("--model-dir", default="models", help="model caches (Whisper weights)")
    group.add_argument("--max-utterances", type=int, default=0,
                       help="score this many mixtures, spread over the test set (0: all)")


def check_mos(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in MOS_COLUMNS]
    if unknown:
        raise ValueError(f"unknown MOS predictor(s) {', '.join(unknown)} for evaluation;"
                         f" choose from {', '.join(MOS_CHOICES)}")
    return tuple(dict.fromkeys(names))


def output_columns(mos: Sequence[str], asr: bool) -> list[str]:
    """The columns of the scores of one signal (no suffix)."""
    return [c for name in mos for c in MOS_COLUMNS[name]] + (["wer"] if asr else [])


def paired_columns(mos: Sequence[str], asr: bool) -> list[str]:
    """An evaluation table's columns: each score of the mixture beside the enhanced speech's."""
    columns = [c for column in output_columns(mos, asr) for c in (column + INPUT, column)]
    return columns + (["reference_words"] if asr else [])


def chosen(count: int, max_utterances: int) -> list[bool]:
    """Which of `count` mixtures get non-intrusive scores: all, or `max_utterances` of them
    spread evenly (first and last included)."""
    if max_utterances <= 0 or max_utterances >= count:
        return [True] * count
    picked = set(np.round(np.linspace(0, count - 1, max_utterances)).astype(int).tolist())
    return [i in picked for i in range(count)]


# ---- MOS ----------------------------------------------------------------------------------

_process_predictors: dict[tuple[str, ...], tuple[dict, dict]] = {}


def preload(names: Sequence[str]) -> None:
    """Import the predictors' packages here, librosa's lazily loaded feature module included (the
    first DNSMOS call would load it), so that scoring processes forked from this one start with
    them instead of each loading them again. Imports only: no model, no thread."""
    import importlib

    modules = {"dnsmos": ("speechmos.dnsmos", "librosa.feature.spectral"), "distillmos": ("distillmos",)}
    for name in names:
        for module in modules[name]:
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # the predictor says why when it is loaded


def process_predictors(names: tuple[str, ...]) -> tuple[dict, dict]:
    """This process's CPU predictors of `names`, loaded on first use with one thread each, and
    the reasons of those that cannot load."""
    if names not in _process_predictors:
        import torch

        torch.set_num_threads(1)
        _process_predictors[names] = load_predictors(list(names), device="cpu", onnx_threads=1)
    return _process_predictors[names]


def predict_mos(predictors: dict, reasons: dict, audios: list[np.ndarray],
                progress: bool = False) -> dict[str, list[float]]:
    """{column: score of each audio}, NaN for a predictor that could not load."""
    out = {}
    for name, predictor in predictors.items():
        scores = predictor.predict(audios, progress=progress)
        out.update({column: [float(v) for v in scores[column]] for column in MOS_COLUMNS[name]})
    for name in reasons:
        out.update({column: [math.nan] * len(audios) for column in MOS_COLUMNS[name]})
    return out


def mos_of_clip(audio: np.ndarray, names: tuple[str, ...], suffix: str = "") -> dict:
    """The scores of one clip by this process's predictors of `names` (scoring-process side),
    with `notes`, `mos_models` (the predictors that ran) and `mos_reasons` (why one did not)."""
    predictors, reasons = process_predictors(names)
    scores = {column + suffix: values[0] for column, values in predict_mos(predictors, reasons, [audio]).items()}
    scores["notes"] = [f"{name}: {reason}" for name, reason in reasons.items()]
    scores["mos_models"] = {name: predictor.model_name for name, predictor in predictors.items()}
    scores["mos_reasons"] = dict(reasons)
    return scores


# ---- WER ----------------------------------------------------------------------------------

def open_asr(asr: str, model_dir: str | os.PathLike, whisper_model: str, device: str):
    """(transcriber or None, the reason it is None). An ASR named explicitly must load."""
    if asr == "none":
        return None, "not run (evaluation.asr is off)"
    try:
        return load_asr(asr, model_dir, whisper_model=whisper_model, device=device), ""
    except ASRUnavailable as exc:
        if asr != "auto":
            raise
        return None, str(exc)


def wer_scores(transcriber, audios: list[np.ndarray | None], texts: list[str],
               suffix: str = "") -> dict[str, list]:
    """`wer{suffix}` and `reference_words` of each audio against its text (NaN where the audio
    is None or has no text), transcribed in the ASR's batches."""
    todo = [i for i, (audio, text) in enumerate(zip(audios, texts)) if audio is not None and text.strip()]
    hypotheses = {}
    with tqdm(total=len(todo), desc=f"ASR {transcriber.name}", unit="utt", mininterval=5.0) as progress:
        for start in range(0, len(todo), transcriber.batch_size):
            batch = todo[start:start + transcriber.batch_size]
            hypotheses.update(zip(batch, transcriber.transcribe_batch([audios[i] for i in batch])))
            progress.update(len(batch))
    wer, words = [math.nan] * len(audios), [math.nan] * len(audios)
    for i, hypothesis in hypotheses.items():
        try:
            errors, words[i] = word_errors(texts[i], hypothesis)
        except ValueError:  # a text of no words once normalised ("...")
            continue
        wer[i] = errors / words[i]
    return {f"wer{suffix}": wer, "reference_words": words}


# ---- where each score runs ------------------------------------------------------------------

@dataclass
class Plan:
    """The non-intrusive scores of one job's clips, and where each runs."""

    mos: tuple[str, ...]
    device: str
    chosen: list[bool]
    texts: list[str]
    asr_requested: bool = False
    transcriber: object | None = None  # until it has run
    asr_name: str | None = None
    asr_reason: str = ""
    device_mos: tuple[str, ...] = ()
    device_predictors: dict = field(default_factory=dict)  # until they have run
    reasons: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    @property
    def cpu_mos(self) -> tuple[str, ...]:
        """The predictors that run in the scoring processes."""
        return tuple(name for name in self.mos if name not in self.device_mos)

    def columns(self) -> list[str]:
        return paired_columns(self.mos, self.asr_requested)

    def score_on_device(self, signals: dict[str, list[np.ndarray]]) -> dict[str, list]:
        """The GPU's part ({suffix: audios} -> {column: scores}): its predictors, and Whisper there;
        then they are dropped, so that the GPU can be given back."""
        out = {}
        for suffix, audios in signals.items():
            picked = [audio for audio, c in zip(audios, self.chosen) if c]
            scores = predict_mos(self.device_predictors, {}, picked, progress=True)
            out.update({column + suffix: self._spread(values) for column, values in scores.items()})
        if self.transcriber is not None and self._asr_on_device():
            out.update(self.score_asr(signals))
        self.device_predictors = {}
        return out

    def score_asr(self, signals: dict[str, list[np.ndarray]]) -> dict[str, list]:
        """The WER of each signal, once (then the ASR is dropped): in the job's own process."""
        out = {}
        if self.transcriber is not None:
            for suffix, audios in signals.items():
                out.update(wer_scores(self.transcriber, [a if c else None for a, c in zip(audios, self.chosen)],
                                      self.texts, suffix))
            self.transcriber = None
        return out

    def _asr_on_device(self) -> bool:
        return str(self.device).startswith("cuda") and str(self.asr_name).startswith("whisper")

    def _spread(self, values: list[float]) -> list[float]:
        it = iter(values)
        return [next(it) if c else math.nan for c in self.chosen]

    def wer_notes(self) -> list[str]:
        """Per utterance, why its WER is missing: no ASR here, or no text."""
        if not self.asr_requested:
            return [""] * len(self.chosen)
        if self.asr_name is None:
            return [f"wer: {self.asr_reason}" if c else "" for c in self.chosen]
        return [NO_TRANSCRIPT if c and not t.strip() else "" for c, t in zip(self.chosen, self.texts)]

    def summary_fields(self) -> dict:
        """The models behind the scores and why one is missing, for a summary JSON."""
        fields = {"n_nonintrusive": sum(self.chosen)}
        for name in self.mos:
            fields[f"{name}_model"] = self.models.get(name)
            fields[f"{name}_reason"] = self.reasons.get(name, "")
        if self.asr_requested:
            fields.update(asr=self.asr_name, asr_reason=self.asr_reason,
                          text_normalizer=normalizer_name() if self.asr_name else None)
        return fields


def give_back_device(device: str) -> None:
    """Free the GPU memory of the models no longer referenced and give the job's GPU slot back."""
    import gc

    from workflow_scripts.runtime.gpu import release_gpu

    if str(device).startswith("cuda"):
        import torch

        gc.collect()
        torch.cuda.empty_cache()
    release_gpu()


def make_plan(mos: Sequence[str], asr: str, texts: Sequence[str], max_utterances: int, device: str,
              model_dir: str | os.PathLike = "models", whisper_model: str = WHISPER_MODEL) -> Plan:
    """Load what runs on the device, and the ASR, now: an ASR named explicitly that cannot load
    stops the job here, before any work."""
    texts = [str(t) for t in texts]
    plan = Plan(check_mos(mos), str(device), chosen(len(texts), max_utterances), texts, asr_requested=asr != "none")
    if plan.asr_requested and not any(t.strip() for t in texts):
        plan.asr_reason = "no transcripts of the test mixtures (test.csv has no text)"
    elif plan.asr_requested:
        plan.transcriber, plan.asr_reason = open_asr(asr, model_dir, whisper_model, str(device))
        plan.asr_name = getattr(plan.transcriber, "name", None)
    if plan.device.startswith("cuda"):
        on_device = [name for name in plan.mos if PREDICTORS[name].uses_gpu]
        plan.device_predictors, plan.reasons = load_predictors(on_device, device=plan.device)
        plan.device_mos = tuple(on_device)
        plan.models.update({name: p.model_name for name, p in plan.device_predictors.items()})
    return plan
