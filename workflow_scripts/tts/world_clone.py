"""An offline zero-shot TTS: clone a voice from its enrollment clip with flite + WORLD.

From the enrollment clip alone it measures the speaker's pitch (median and
spread of log-F0 over voiced frames), then searches a coarse grid of base
flite voices and formant warps for the rendering of a probe sentence that a
speaker encoder (Resemblyzer) finds most similar to the clip. Each rendering
is first given the clip's long-term spectrum (a smooth equaliser over a few
bands, which also carries the microphone's colour, as prompt-based TTS
systems copy the prompt's channel). Breathiness, speaking rate and the room's
reverberation are not estimated and the grid is coarse, so the clone is close
to the speaker but weaker than their real speech: which is what a zero-shot
TTS system gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np
from scipy.signal import fftconvolve, firwin2, welch

from workflow_scripts.files.audio import SAMPLE_RATE, peak_normalize, resample
from workflow_scripts.tts import TTSBackend
from workflow_scripts.world.voices import (
    FLITE_VOICES,
    VoiceParams,
    analyze_world,
    base_voice_pitch,
    log_f0_stats,
    pitch_search_range,
    render_flite,
    speak,
    synthesize_world,
)

DEFAULT_PROBE_TEXT = (
    "She had your dark suit in greasy wash water all year. Don't ask me to carry an oily rag."
)
ENROLLMENT_F0_RANGE_HZ = (50.0, 500.0)
F0_RANGE_SCALE_LIMITS = (0.5, 2.0)
EQ_RANGE_HZ = (80.0, 7600.0)
EQ_LIMIT_DB = 12.0
EQ_TAPS = 257


def band_levels_db(audio: np.ndarray, edges_hz: np.ndarray) -> np.ndarray:
    """Long-term level (dB) of the active speech of `audio` in each band between consecutive edges."""
    frame = 512
    if audio.size < 4 * frame:
        raise ValueError(f"audio too short for a long-term spectrum ({audio.size} samples)")
    frames = audio[: audio.size // frame * frame].reshape(-1, frame)
    energy = np.sum(frames**2, axis=1)
    active = frames[energy > 1e-4 * energy.max()].ravel()  # drop pauses (40 dB below the loudest frame)
    freqs_hz, psd = welch(active, SAMPLE_RATE, nperseg=frame)
    levels = [
        psd[(freqs_hz >= low) & (freqs_hz < high)].mean() for low, high in zip(edges_hz[:-1], edges_hz[1:])
    ]
    return 10.0 * np.log10(np.maximum(levels, 1e-20))


def equalize(audio: np.ndarray, centers_hz, gains_db) -> np.ndarray:
    """Linear-phase FIR with the given gains at band centres (interpolated, flat beyond the ends)."""
    freqs_hz = np.concatenate([[0.0], centers_hz, [SAMPLE_RATE / 2]])
    gains_db = np.concatenate([[gains_db[0]], gains_db, [gains_db[-1]]])
    taps = firwin2(EQ_TAPS, freqs_hz, 10.0 ** (np.asarray(gains_db) / 20.0), fs=SAMPLE_RATE)
    delay = EQ_TAPS // 2
    return fftconvolve(audio, taps)[delay : delay + audio.size].astype(np.float32)


def enrollment_pitch(enrollment: np.ndarray) -> tuple[float, float]:
    """(median log-F0, log-F0 spread) of the clip: a wide first pass, then one around its median."""
    f0, _, _ = analyze_world(enrollment, *ENROLLMENT_F0_RANGE_HZ)
    if np.count_nonzero(f0) < 10:
        raise ValueError("enrollment clip: too few voiced frames to measure the speaker's pitch")
    median_log_f0, _ = log_f0_stats(f0)
    median_hz = float(np.exp(median_log_f0))
    f0, _, _ = analyze_world(enrollment, median_hz / 2.0, median_hz * 2.5)
    return log_f0_stats(f0)


class WorldCloneBackend(TTSBackend):
    """flite + WORLD voice cloning by speaker-similarity search.

    Options: base_voices (flite voices to start from), num_warps and
    warp_range (the formant-warp grid, geometric), num_eq_bands (bands of the
    equaliser matching the clip's long-term spectrum, 0 to 16; 0 turns it
    off), probe_text (the sentences whose renderings are compared with the
    clip), duration_jitter (the std of the per-utterance log speaking-rate
    change drawn from the seed).
    """

    name = "world_clone"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        device: str = "cpu",
        base_voices=("kal16", "awb", "rms", "slt"),
        num_warps: int = 8,
        warp_range=(0.82, 1.22),
        num_eq_bands: int = 8,
        probe_text: str = DEFAULT_PROBE_TEXT,
        duration_jitter: float = 0.03,
        cpu_threads: int = 1,
        model_dir: str | None = None,  # loads no model: accepted like every backend, unused
    ) -> None:
        base_voices = list(base_voices)
        unknown = [v for v in base_voices if v not in FLITE_VOICES]
        if not base_voices or unknown:
            known = ", ".join(FLITE_VOICES)
            raise ValueError(f"world_clone: base_voices must be flite voices ({known}), got {base_voices}")
        if num_warps < 1 or len(warp_range) != 2 or not 0 < warp_range[0] <= warp_range[1]:
            raise ValueError(
                f"world_clone: need num_warps >= 1 and 0 < warp_range[0] <= warp_range[1], "
                f"got {num_warps}, {warp_range}"
            )
        if not 0 <= num_eq_bands <= 16:
            raise ValueError(
                f"world_clone: num_eq_bands must be in 0..16 (0: no equaliser), got {num_eq_bands}"
            )
        if not probe_text.strip():
            raise ValueError("world_clone: probe_text is empty")
        if duration_jitter < 0:
            raise ValueError(f"world_clone: duration_jitter must be >= 0, got {duration_jitter}")
        if cpu_threads < 1:
            raise ValueError(f"world_clone: cpu_threads must be >= 1, got {cpu_threads}")
        super().__init__(
            device=device,
            base_voices=base_voices,
            num_warps=num_warps,
            warp_range=list(warp_range),
            num_eq_bands=num_eq_bands,
            probe_text=probe_text,
            duration_jitter=duration_jitter,
            cpu_threads=cpu_threads,
        )
        self.base_voices = base_voices
        self.warps = [round(float(w), 4) for w in np.geomspace(warp_range[0], warp_range[1], num_warps)]
        self.eq_edges_hz = np.geomspace(*EQ_RANGE_HZ, num_eq_bands + 1) if num_eq_bands else None
        self.probe_text = probe_text
        self.duration_jitter = duration_jitter
        self.cpu_threads = cpu_threads

    @functools.cached_property
    def encoder(self):
        from workflow_scripts.scoring.speaker_similarity import SpeakerEncoder

        return SpeakerEncoder(device=self.device)

    @functools.lru_cache(maxsize=None)
    def _probe_analysis(self, voice: str):
        """WORLD analysis of the probe sentence read by a base voice (computed once)."""
        return analyze_world(render_flite(self.probe_text, voice), *pitch_search_range(voice))

    def _matched(self, rendering: np.ndarray, target_levels_db) -> tuple[np.ndarray, list[float]]:
        """The rendering equalised to the target's long-term band levels, and the gains used."""
        if self.eq_edges_hz is None:
            return rendering, []
        gains_db = target_levels_db - band_levels_db(rendering, self.eq_edges_hz)
        gains_db = np.clip(gains_db - np.median(gains_db), -EQ_LIMIT_DB, EQ_LIMIT_DB)
        return equalize(rendering, self._eq_centers_hz(), gains_db), [round(float(g), 3) for g in gains_db]

    def _eq_centers_hz(self) -> np.ndarray:
        return np.sqrt(self.eq_edges_hz[:-1] * self.eq_edges_hz[1:])

    @contextlib.contextmanager
    def _encoder_threads(self):
        """Limit torch's CPU threads while the speaker encoder runs."""
        import torch

        previous = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(self.cpu_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """Estimated VoiceParams (as a dict), equaliser, similarity reached, measured pitch, the search."""
        with self._encoder_threads():
            return self._search(enrollment, sample_rate)

    def _search(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        enrollment = resample(np.asarray(enrollment, dtype=np.float32), sample_rate, SAMPLE_RATE)
        median_log_f0, log_f0_spread = enrollment_pitch(enrollment)
        target = self.encoder.embed([enrollment])[0]
        target_levels_db = (
            band_levels_db(enrollment, self.eq_edges_hz) if self.eq_edges_hz is not None else None
        )

        candidates, renderings, eq_gains = [], [], []
        for voice in self.base_voices:
            base_median, base_spread = base_voice_pitch(voice)
            range_scale = float(np.clip(log_f0_spread / base_spread, *F0_RANGE_SCALE_LIMITS))
            for warp in self.warps:
                params = VoiceParams(
                    base_voice=voice,
                    f0_scale=round(float(np.exp(median_log_f0 - base_median)), 4),
                    f0_range_scale=round(range_scale, 4),
                    formant_warp=warp,
                )
                rendering, gains_db = self._matched(
                    synthesize_world(*self._probe_analysis(voice), params), target_levels_db
                )
                candidates.append(params)
                renderings.append(rendering)
                eq_gains.append(gains_db)
        scores = self.encoder.embed(renderings) @ target
        best = int(np.argmax(scores))
        return {
            "voice_params": candidates[best].to_dict(),
            "eq_centers_hz": [round(float(f), 2) for f in self._eq_centers_hz()] if eq_gains[best] else [],
            "eq_gains_db": eq_gains[best],
            "speaker_similarity": float(scores[best]),
            "enrollment_f0_hz": float(np.exp(median_log_f0)),
            "enrollment_log_f0_spread": log_f0_spread,
            "search": [
                {"base_voice": c.base_voice, "formant_warp": c.formant_warp, "similarity": round(float(v), 4)}
                for c, v in zip(candidates, scores)
            ],
        }

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        """The text in the cloned voice; the seed changes the speaking rate slightly."""
        params = VoiceParams.from_dict(conditioning["voice_params"])
        rng = np.random.default_rng(seed)
        stretch = params.duration_stretch * float(np.exp(rng.normal(0.0, self.duration_jitter)))
        audio = speak(text, dataclasses.replace(params, duration_stretch=stretch))
        if conditioning.get("eq_gains_db"):
            audio = peak_normalize(
                equalize(audio, conditioning["eq_centers_hz"], conditioning["eq_gains_db"]), 0.9
            )
        return audio
