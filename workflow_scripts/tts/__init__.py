"""Zero-shot TTS backends, looked up by name.

A backend turns an enrollment clip into a conditioning (computed once per
speaker and stored as its own artifact) and text plus that conditioning into
speech. Backends are imported lazily, so a job only loads what it uses.
Adding a system means writing one module with a `TTSBackend` subclass and one
line in `BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

# name -> "module:Class"; modules are imported only when the backend is asked for
BACKENDS: dict[str, str] = {
    "world_clone": "workflow_scripts.tts.world_clone:WorldCloneBackend",
    "flite": "workflow_scripts.tts.flite:FliteBackend",
    "speecht5": "workflow_scripts.tts.speecht5:SpeechT5Backend",
    "yourtts": "workflow_scripts.tts.coqui:YourTTSBackend",
    "xtts": "workflow_scripts.tts.coqui:XttsBackend",
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
    module_name, class_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(device=device, **options)
