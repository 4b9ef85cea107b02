"""Synthetic human-like voices: flite renders the words, WORLD reshapes the voice.

A voice is a `VoiceParams`: a base flite voice plus a WORLD vocoder
transformation (F0 level and range, formant warp, breathiness, spectral tilt,
speaking rate). `speak` renders text in such a voice at 16 kHz.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

from workflow_scripts.files.audio import SAMPLE_RATE, peak_normalize, resample

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import pyworld

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FRAME_PERIOD_MS = 5.0
# a fixed text whose rendering measures a base voice's pitch
PITCH_PROBE_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish."
)


class FliteError(RuntimeError):
    """flite is missing or failed."""


def render_flite(text: str, voice: str = "kal16", duration_stretch: float = 1.0) -> np.ndarray:
    """Render `text` with the flite voice `voice`; mono float32 at 16 kHz.

    `voice` is a built-in voice name or a .flitevox file; `duration_stretch`
    > 1 speaks more slowly. Raises FliteError if the flite binary is missing
    or fails, ValueError on empty text or an unknown voice.
    """
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("render_flite: text is empty")
    if voice not in FLITE_VOICES and not os.path.isfile(voice):
        # flite silently falls back to its default voice on unknown names
        raise ValueError(
            f"render_flite: unknown flite voice {voice!r}; built-in voices: {', '.join(FLITE_VOICES)}"
        )
    if not duration_stretch > 0:
        raise ValueError(f"render_flite: duration_stretch must be > 0, got {duration_stretch}")
    flite = shutil.which("flite")
    if flite is None:
        raise FliteError("flite not found on PATH: install it (Debian/Ubuntu: apt-get install flite)")
    fd, wav_path = tempfile.mkstemp(prefix="flite_", suffix=".wav")
    os.close(fd)
    try:
        cmd = [
            flite,
            "-voice",
            voice,
            "--setf",
            f"duration_stretch={duration_stretch:.4f}",
            "-t",
            text,
            "-o",
            wav_path,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or os.path.getsize(wav_path) <= 44:
            message = proc.stderr.strip() or proc.stdout.strip()
            raise FliteError(f"flite failed (voice {voice!r}, exit code {proc.returncode}): {message}")
        audio, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    finally:
        os.unlink(wav_path)
    return resample(audio.mean(axis=1), sr, SAMPLE_RATE)


@dataclasses.dataclass(frozen=True)
class VoiceParams:
    """A voice: a flite base voice reshaped by the WORLD vocoder.

    f0_scale multiplies F0; f0_range_scale expands (>1) or compresses (<1)
    log-F0 around its mean; formant_warp > 1 moves the spectral envelope up
    in frequency (a shorter vocal tract); aperiodicity_offset in [0, 1) adds
    breathiness; spectral_tilt_db_per_octave tilts the envelope around 1 kHz;
    duration_stretch > 1 speaks more slowly.
    """

    base_voice: str = "kal16"
    f0_scale: float = 1.0
    f0_range_scale: float = 1.0
    formant_warp: float = 1.0
    aperiodicity_offset: float = 0.0
    spectral_tilt_db_per_octave: float = 0.0
    duration_stretch: float = 1.0

    def __post_init__(self) -> None:
        for name in ("f0_scale", "f0_range_scale", "formant_warp", "duration_stretch"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VoiceParams.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.aperiodicity_offset < 1.0:
            raise ValueError(
                f"VoiceParams.aperiodicity_offset must be in [0, 1), got {self.aperiodicity_offset}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VoiceParams":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"VoiceParams: unknown keys {sorted(unknown)}")
        return cls(**{key: (str(v) if key == "base_voice" else float(v)) for key, v in values.items()})


def analyze_world(audio: np.ndarray, f0_floor_hz: float = 60.0, f0_ceil_hz: float = 500.0):
    """WORLD analysis at 16 kHz: (f0_hz, spectral_envelope, aperiodicity), 5 ms frames."""
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.dio(
        x, SAMPLE_RATE, f0_floor=f0_floor_hz, f0_ceil=f0_ceil_hz, frame_period=FRAME_PERIOD_MS
    )
    f0 = pyworld.stonemask(x, f0, times, SAMPLE_RATE)
    envelope = pyworld.cheaptrick(x, f0, times, SAMPLE_RATE)
    aperiodicity = pyworld.d4c(x, f0, times, SAMPLE_RATE)
    return f0, envelope, aperiodicity


def log_f0_stats(f0_hz: np.ndarray) -> tuple[float, float]:
    """(median, spread) of log-F0 over voiced frames; spread is a robust std (IQR / 1.349)."""
    voiced = np.log(f0_hz[f0_hz > 0])
    if voiced.size < 10:
        raise ValueError("too few voiced frames to measure pitch")
    q25, q50, q75 = np.percentile(voiced, [25, 50, 75])
    return float(q50), float((q75 - q25) / 1.349)


def shift_f0(f0_hz: np.ndarray, f0_scale: float, f0_range_scale: float) -> np.ndarray:
    """Scale F0 and expand/compress log-F0 around its voiced mean; unvoiced frames stay 0."""
    out = np.zeros_like(f0_hz)
    voiced = f0_hz > 0
    if voiced.any():
        log_f0 = np.log(f0_hz[voiced])
        mean = log_f0.mean()
        out[voiced] = np.exp(mean + (log_f0 - mean) * f0_range_scale) * f0_scale
    return np.clip(out, 0.0, 0.45 * SAMPLE_RATE)


def warp_envelope(envelope: np.ndarray, formant_warp: float) -> np.ndarray:
    """Move the spectral envelope along frequency: new(f) = old(f / formant_warp)."""
    if formant_warp == 1.0:
        return envelope
    bins = np.arange(envelope.shape[1], dtype=np.float64)
    source = np.clip(bins / formant_warp, 0, bins[-1])
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, bins.size - 1)
    frac = source - low
    return envelope[:, low] * (1.0 - frac) + envelope[:, high] * frac


def tilt_gain(num_bins: int, tilt_db_per_octave: float) -> np.ndarray:
    """Power gain per bin for a tilt of `tilt_db_per_octave` around 1 kHz (flat below 100 Hz)."""
    freqs_hz = np.linspace(0.0, SAMPLE_RATE / 2, num_bins)
    octaves = np.log2(np.maximum(freqs_hz, 100.0) / 1000.0)
    return 10.0 ** (tilt_db_per_octave * octaves / 10.0)


def add_breathiness(aperiodicity: np.ndarray, offset: float) -> np.ndarray:
    """Move aperiodicity towards 1 (noise), more at high frequencies."""
    if offset == 0.0:
        return aperiodicity
    freqs_hz = np.linspace(0.0, SAMPLE_RATE / 2, aperiodicity.shape[1])
    weight = np.clip(freqs_hz / 3000.0, 0.25, 1.0)
    return 1.0 - (1.0 - aperiodicity) * (1.0 - offset * weight)


def transform_voice(audio: np.ndarray, params: VoiceParams) -> np.ndarray:
    """Reshape 16 kHz speech of `params.base_voice` with WORLD.

    All parameters but base_voice and duration_stretch apply here; the F0
    search range follows the base voice's pitch, which avoids octave errors.
    """
    if audio.size < SAMPLE_RATE // 10:
        raise ValueError(f"transform_voice: audio too short ({audio.size} samples)")
    f0_floor_hz, f0_ceil_hz = pitch_search_range(params.base_voice)
    f0, envelope, aperiodicity = analyze_world(audio, f0_floor_hz, f0_ceil_hz)
    return synthesize_world(f0, envelope, aperiodicity, params)


def synthesize_world(f0_hz, envelope, aperiodicity, params: VoiceParams) -> np.ndarray:
    """WORLD synthesis of an analysed utterance under the transformation `params`."""
    f0_new = shift_f0(f0_hz, params.f0_scale, params.f0_range_scale)
    envelope_new = warp_envelope(envelope, params.formant_warp)
    envelope_new = envelope_new * tilt_gain(envelope.shape[1], params.spectral_tilt_db_per_octave)
    aperiodicity_new = add_breathiness(aperiodicity, params.aperiodicity_offset)
    out = pyworld.synthesize(
        np.ascontiguousarray(f0_new),
        np.ascontiguousarray(envelope_new),
        np.ascontiguousarray(aperiodicity_new),
        SAMPLE_RATE,
        FRAME_PERIOD_MS,
    )
    return out.astype(np.float32)


def speak(text: str, params: VoiceParams, peak: float = 0.9) -> np.ndarray:
    """Render `text` in the voice `params`: flite, then WORLD; peak-normalised 16 kHz float32."""
    audio = render_flite(text, params.base_voice, params.duration_stretch)
    return peak_normalize(transform_voice(audio, params), peak)


@functools.lru_cache(maxsize=None)
def base_voice_pitch(voice: str) -> tuple[float, float]:
    """(median log-F0, log-F0 spread) of a flite voice, measured on a fixed probe text."""
    f0, _, _ = analyze_world(render_flite(PITCH_PROBE_TEXT, voice))
    return log_f0_stats(f0)


def pitch_search_range(voice: str) -> tuple[float, float]:
    """F0 search range (Hz) for analysing speech of a flite voice: median / 2 .. median * 2.5."""
    median_hz = float(np.exp(base_voice_pitch(voice)[0]))
    return median_hz / 2.0, median_hz * 2.5


# Plausible adult voices: median F0 (Hz) and a vocal-tract factor relative to an
# average male (formants of adult female voices are ~15% higher). Warping a
# female base voice's formants further up sounds child-like and hurts
# intelligibility, hence the narrow female range.
FEMALE_F0_HZ = (165.0, 255.0)
MALE_F0_HZ = (85.0, 150.0)
FEMALE_TRACT = (1.06, 1.16)
MALE_TRACT = (0.96, 1.05)
FEMALE_BASE_F0_HZ = 140.0  # base voices above this median F0 count as female
FEMALE_BASE_TRACT = 1.15


def random_voice(rng: np.random.Generator, base_voices, base_voice: str | None = None) -> VoiceParams:
    """Draw a plausible human-like voice from one of `base_voices` (or from `base_voice` if given)."""
    base_voices = list(base_voices)
    if not base_voices:
        raise ValueError("random_voice: no base voices given")
    drawn_voice = base_voices[int(rng.integers(len(base_voices)))]
    base_voice = base_voice or drawn_voice
    female = bool(rng.random() < 0.5)
    f0_low, f0_high = FEMALE_F0_HZ if female else MALE_F0_HZ
    target_f0_hz = float(np.exp(rng.uniform(np.log(f0_low), np.log(f0_high))))
    tract_low, tract_high = FEMALE_TRACT if female else MALE_TRACT
    target_tract = rng.uniform(tract_low, tract_high)
    base_median_log_f0, _ = base_voice_pitch(base_voice)
    base_tract = FEMALE_BASE_TRACT if np.exp(base_median_log_f0) > FEMALE_BASE_F0_HZ else 1.0
    return VoiceParams(
        base_voice=base_voice,
        f0_scale=round(target_f0_hz / float(np.exp(base_median_log_f0)), 4),
        f0_range_scale=round(float(rng.uniform(0.8, 1.6)), 4),
        formant_warp=round(float(np.clip(target_tract / base_tract, 0.82, 1.22)), 4),
        aperiodicity_offset=round(float(rng.uniform(0.0, 0.3)), 4),
        spectral_tilt_db_per_octave=round(float(rng.uniform(-2.0, 1.5)), 4),
        duration_stretch=round(float(rng.uniform(0.9, 1.1)), 4),
    )


# ---- how a person is recorded: room, microphone, level ----------------------------------------


def draw_recording(rng: np.random.Generator) -> dict:
    """A mild recording chain: small room, microphone response, level (JSON-serialisable)."""
    return {
        "rt60_s": round(float(rng.uniform(0.08, 0.22)), 4),
        "direct_to_reverb_db": round(float(rng.uniform(13.0, 20.0)), 4),
        "highpass_hz": round(float(rng.uniform(60.0, 180.0)), 2),
        "lowpass_hz": round(float(rng.uniform(5500.0, 7800.0)), 2),
        "peaks": [
            {
                "freq_hz": round(float(np.exp(rng.uniform(np.log(250.0), np.log(4500.0)))), 2),
                "gain_db": round(float(rng.uniform(-3.0, 3.0)), 3),
                "q": round(float(rng.uniform(0.7, 2.0)), 3),
            }
            for _ in range(2)
        ],
        "peak_level_db": round(float(rng.uniform(-10.0, -3.0)), 3),
        "level_jitter_db": round(float(rng.uniform(0.5, 2.0)), 3),
        "room_seed": int(rng.integers(2**31)),
    }


def room_impulse_response(recording: dict) -> np.ndarray:
    """Direct path plus an exponentially decaying diffuse tail (deterministic from room_seed)."""
    rng = np.random.default_rng(recording["room_seed"])
    rt60_s = recording["rt60_s"]
    length = int(rt60_s * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # first reflections arrive a few ms after the direct path
    tail = sosfilt(butter(1, 4000.0, fs=SAMPLE_RATE, output="sos"), tail)  # walls absorb highs
    tail *= np.sqrt(10 ** (-recording["direct_to_reverb_db"] / 10) / np.sum(tail**2))
    tail[0] += 1.0
    return tail


def _peaking_sos(freq_hz: float, gain_db: float, q: float) -> np.ndarray:
    """RBJ peaking equaliser as one second-order section."""
    a_gain = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq_hz / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a_gain, -2 * np.cos(w0), 1 - alpha * a_gain])
    a = np.array([1 + alpha / a_gain, -2 * np.cos(w0), 1 - alpha / a_gain])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


def record(audio: np.ndarray, recording: dict, gain_db: float = 0.0) -> np.ndarray:
    """Speech as recorded through `recording`: room, microphone, then its level (+ gain_db)."""
    reverberant = fftconvolve(audio, room_impulse_response(recording))[: audio.size + int(0.25 * SAMPLE_RATE)]
    band = butter(
        2, [recording["highpass_hz"], recording["lowpass_hz"]], btype="bandpass", fs=SAMPLE_RATE, output="sos"
    )
    sections = [band] + [_peaking_sos(p["freq_hz"], p["gain_db"], p["q"]) for p in recording["peaks"]]
    out = sosfilt(np.concatenate(sections), reverberant)
    return peak_normalize(out.astype(np.float32), 10 ** ((recording["peak_level_db"] + gain_db) / 20))
