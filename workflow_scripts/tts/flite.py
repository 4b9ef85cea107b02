"""A non-cloning baseline: every speaker is read by one fixed flite voice.

It shows what fine-tuning on clear speech of the wrong voice gives, so that
the gain of actually cloning the target voice can be measured against it.
"""

from __future__ import annotations

import os

import numpy as np

from workflow_scripts.tts import TTSBackend
from workflow_scripts.world.voices import FLITE_VOICES, render_flite


class FliteBackend(TTSBackend):
    """flite speech in a fixed voice (option `voice`, default "kal16": a
    built-in voice name or a .flitevox file).

    The enrollment clip is ignored by design: the conditioning holds only the
    configured flite voice, whoever the speaker is. flite is deterministic, so
    the seed has no effect.
    """

    name = "flite"
    sample_rate = 16000

    def __init__(self, device: str = "cpu", voice: str = "kal16", model_dir: str | None = None,
                 **options) -> None:
        if options:
            raise TypeError(f"flite backend: unknown options {sorted(options)}; it takes only `voice`")
        if voice not in FLITE_VOICES and not os.path.isfile(voice):
            raise ValueError(
                f"flite backend: unknown voice {voice!r}; built-in voices: {', '.join(FLITE_VOICES)}"
                " (or a .flitevox file)"
            )
        super().__init__(device=device, voice=voice)
        self.voice = voice

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """The fixed voice name; the enrollment audio is not used."""
        return {"voice": self.voice}

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        return render_flite(text, voice=conditioning["voice"])
