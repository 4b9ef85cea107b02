"""Zero-shot TTS backends, looked up by name: each declares its class, its conda env and its models.

A backend turns an enrollment clip into a conditioning (computed once per
speaker and stored as its own artifact, `workflow_scripts.tts.voice`) and text
plus that conditioning into speech. Adding a system means writing one module
with a `TTSBackend` subclass and one line in `BACKENDS`.

The workflow reads `BACKENDS` while it is parsed (which conda env a job runs
in, which models download_models fetches first), so this module imports no
third-party package; a backend's module is imported only when the backend is
asked for, so a job only loads what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow_scripts.runtime import model_cache

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Model:
    """A model a backend loads: how download_models fetches it, and the name used when
    the backend's option does not name another (a hub id, a coqui name or a local folder)."""

    kind: str  # huggingface, speechbrain, coqui, whisper, f5tts or chatterbox (workflow_scripts.download_models)
    default: str


@dataclass(frozen=True)
class License:
    """Terms that model weights are under and that a job's user must accept first: the
    config's `accept_licenses` names `key`; the workflow then sets `env`=1 for the job."""

    key: str
    name: str
    url: str
    env: str


LICENSES: dict[str, License] = {
    "coqui_cpml": License("coqui_cpml", "Coqui Public Model License (CPML)", "https://coqui.ai/cpml",
                          "COQUI_TOS_AGREED"),
    "f5tts_cc_by_nc": License("f5tts_cc_by_nc", "Creative Commons Attribution-NonCommercial 4.0 (CC BY-NC 4.0)",
                              "https://creativecommons.org/licenses/by-nc/4.0/", "F5TTS_CC_BY_NC_ACCEPTED"),
}


def license_refusal(backend: str, license_key: str, weights: str) -> str:
    """What a backend says when its weights' license has not been accepted."""
    terms = LICENSES[license_key]
    config_key = ("`accept_licenses: [coqui_cpml]` (or `accept_coqui_license: true`)"
                  if license_key == "coqui_cpml" else f"`accept_licenses: [{license_key}]`")
    return (f"{backend} backend: {weights} are under the {terms.name} ({terms.url}), which must be accepted "
            f"before the model is used. Set {config_key} in the config (the workflow then sets "
            f"{terms.env}=1 for the job), or set {terms.env}=1 when running the step by hand.")


def license_accepted(license_key: str) -> bool:
    """Whether the job was started with the license accepted (its environment variable is 1)."""
    return os.environ.get(LICENSES[license_key].env) == "1"


@dataclass(frozen=True)
class Backend:
    """A registry entry: the class, where its jobs run and what they load."""

    target: str  # "module:Class", imported only when the backend is asked for
    conda_env: str  # envs/<conda_env>.yaml
    models: dict[str, Model] = field(default_factory=dict)  # backend option -> the model it names
    license: str | None = None  # a key of LICENSES: the weights' terms, accepted in the config first
    # conditioned on the enrollment clip's transcript: the speaker sheet's enrollment_text, else the ASR's
    transcript: bool = False

    @property
    def coqui_license(self) -> bool:
        """Weights under the Coqui Public Model License (config accept_coqui_license)."""
        return self.license == "coqui_cpml"

    def default(self, option: str) -> str:
        """The model the backend loads when `option` is not given."""
        return self.models[option].default

    def models_needed(self, options: dict) -> dict[str, list[str]]:
        """kind -> the model names that these options make the backend load."""
        needed: dict[str, list[str]] = {}
        for option, model in self.models.items():
            needed.setdefault(model.kind, []).append(options.get(option, model.default))
        return needed


XVECTOR = Model("speechbrain", model_cache.XVECTOR_MODEL)

BACKENDS: dict[str, Backend] = {
    "world_clone": Backend("workflow_scripts.tts.world_clone:WorldCloneBackend", "tts-offline"),
    "flite": Backend("workflow_scripts.tts.flite:FliteBackend", "tts-offline"),
    # speech made elsewhere, imported (import_speech): no model, no voice conditioning
    "folder": Backend("workflow_scripts.tts.folder:FolderBackend", "tts-offline"),
    "speecht5": Backend(
        "workflow_scripts.tts.speecht5:SpeechT5Backend",
        "tts-hf",
        {
            "model": Model("huggingface", "microsoft/speecht5_tts"),
            "vocoder": Model("huggingface", "microsoft/speecht5_hifigan"),
            "speaker_encoder": XVECTOR,
        },
    ),
    "yourtts": Backend(
        "workflow_scripts.tts.coqui:YourTTSBackend",
        "tts-coqui",
        {"model": Model("coqui", "tts_models/multilingual/multi-dataset/your_tts")},
    ),
    "xtts": Backend(
        "workflow_scripts.tts.coqui:XttsBackend",
        "tts-coqui",
        {"model": Model("coqui", "tts_models/multilingual/multi-dataset/xtts_v2")},
        license="coqui_cpml",
    ),
    # conditioned on the enrollment clip and its transcript; weights under CC BY-NC 4.0
    "f5tts": Backend(
        "workflow_scripts.tts.f5tts:F5TTSBackend",
        "tts-f5",
        {"model": Model("f5tts", "F5TTS_v1_Base"), "vocoder": Model("huggingface", "charactr/vocos-mel-24khz")},
        license="f5tts_cc_by_nc",
        transcript=True,
    ),
    # every output carries Resemble AI's PerTh watermark
    "chatterbox": Backend(
        "workflow_scripts.tts.chatterbox:ChatterboxBackend",
        "tts-chatterbox",
        {"model": Model("chatterbox", "ResembleAI/chatterbox")},
    ),
}

# Released checkpoints fetched file by file, as their own loaders fetch them (their hub
# repositories hold other models too): kind -> name -> (repository, files).
HUB_FILES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "f5tts": {
        "F5TTS_v1_Base": ("SWivid/F5-TTS", ("F5TTS_v1_Base/model_1250000.safetensors", "F5TTS_v1_Base/vocab.txt")),
        "F5TTS_Base": ("SWivid/F5-TTS", ("F5TTS_Base/model_1200000.safetensors", "F5TTS_Base/vocab.txt")),
    },
    "chatterbox": {
        "ResembleAI/chatterbox": ("ResembleAI/chatterbox", ("ve.safetensors", "t3_cfg.safetensors",
                                                            "s3gen.safetensors", "tokenizer.json")),
    },
}


@dataclass(frozen=True)
class EnrollmentText:
    """How a backend with `transcript` learns what the enrollment clip says: `text` from the
    speaker sheet (column enrollment_text), or, when it is empty, the transcript of the ASR
    `asr` (workflow_scripts.scoring.asr; config tts_scoring.asr and whisper_model)."""

    text: str = ""
    asr: str = "auto"
    whisper_model: str = model_cache.WHISPER_MODEL

    def problem(self) -> str | None:
        """Why no transcript can be had, or None."""
        if not self.text.strip() and self.asr == "none":
            return ("no transcript of the enrollment clip: give it in the speaker sheet's enrollment_text "
                    "column, or set tts_scoring.asr to auto, whisper or pocketsphinx (it is none)")
        return None


class TTSBackend:
    """Interface of a TTS backend.

    `sample_rate` is the rate of the audio that `synthesize` returns; the
    synthesis step resamples to 16 kHz once.
    """

    name: str = ""
    sample_rate: int = 16000

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.device = device
        self.options = options

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """Everything the backend needs to know of the target voice. A backend registered with
        `transcript` takes a keyword `enrollment_text` (an EnrollmentText) too."""
        raise NotImplementedError

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        """One utterance, mono float32 at `self.sample_rate`."""
        raise NotImplementedError

    def synthesize_batch(self, texts: list[str], conditioning: dict, seeds: list[int]) -> list[np.ndarray]:
        """Several utterances; backends that batch on the GPU override this."""
        return [self.synthesize(text, conditioning, seed) for text, seed in zip(texts, seeds)]


def available_backends() -> list[str]:
    return sorted(BACKENDS)


def get_backend(name: str, device: str = "cpu", **options: Any) -> TTSBackend:
    """Instantiate the backend registered as `name`."""
    if name not in BACKENDS:
        raise KeyError(f"unknown TTS backend {name!r}; known backends: {', '.join(available_backends())}")
    module_name, class_name = BACKENDS[name].target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(device=device, **options)


def load_backend(name: str, options: dict, device: str = "auto", model_dir: Path | None = None) -> TTSBackend:
    """The backend with `options` on the device `--device` resolves to (a GPU slot claimed
    for "auto"); with `model_dir`, every model cache points there first."""
    from workflow_scripts.runtime.gpu import resolve_device

    if model_dir is not None:
        from workflow_scripts.runtime import model_cache

        model_cache.configure(model_dir)
        options = dict(options, model_dir=str(model_dir))
    return get_backend(name, device=resolve_device(device), **options)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """The options of the steps that run a backend: --backend, --options-json, --device, --model-dir
    (read back with `parse_options(args.options_json)` and `load_backend`)."""
    parser.add_argument("--backend", required=True, help="TTS backend name (workflow_scripts.tts.BACKENDS)")
    parser.add_argument("--options-json", default="{}", help="backend options as a JSON object")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--model-dir", default=None, type=Path,
                        help="model caches (workflow_scripts.runtime.model_cache); backends that load weights use it")


def parse_options(options_json: str) -> dict:
    """Backend options from the command line (`--options-json`); must be a JSON object."""
    try:
        options = json.loads(options_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--options-json is not valid JSON ({exc}): {options_json!r}") from exc
    if not isinstance(options, dict):
        raise ValueError(f"--options-json must be a JSON object, got {options_json!r}")
    return options
