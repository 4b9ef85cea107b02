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

    kind: str  # huggingface, speechbrain, coqui or whisper (workflow_scripts.download_models)
    default: str


@dataclass(frozen=True)
class Backend:
    """A registry entry: the class, where its jobs run and what they load."""

    target: str  # "module:Class", imported only when the backend is asked for
    conda_env: str  # envs/<conda_env>.yaml
    models: dict[str, Model] = field(default_factory=dict)  # backend option -> the model it names
    coqui_license: bool = False  # weights under the Coqui Public Model License (config accept_coqui_license)

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
        coqui_license=True,
    ),
}


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
        """Everything the backend needs to know of the target voice."""
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
