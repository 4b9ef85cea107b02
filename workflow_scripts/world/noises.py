"""Deterministic noise generators: diverse everyday-like noise families at 16 kHz.

Each family has a parameter sampler (`draw_noise_params`) and a renderer; both
take a numpy Generator, so a seed fixes the noise exactly. Target speakers and
the background pool draw from the same families with independent random
parameters, as two recordings of "a fan" or "a siren" differ.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from workflow_scripts.files.audio import SAMPLE_RATE, peak_normalize

NOISE_KINDS = ("colored", "bandpass", "hum", "clicks", "bursts", "siren", "machinery", "rain", "babble")
NOISE_PEAK = 0.8
MAX_CREST = 12.0  # peaks beyond 12x the RMS are softly limited (as a recorder's limiter would)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _bandpass(signal: np.ndarray, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    nyquist = SAMPLE_RATE / 2
    low_hz = float(np.clip(low_hz, 20.0, nyquist * 0.95))
    high_hz = float(np.clip(high_hz, low_hz * 1.05, nyquist * 0.98))
    sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, signal)


def _highpass(signal: np.ndarray, cutoff_hz: float, order: int = 2) -> np.ndarray:
    sos = butter(order, cutoff_hz, btype="highpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, signal)


def _lowpass(signal: np.ndarray, cutoff_hz: float, order: int = 2) -> np.ndarray:
    sos = butter(order, min(cutoff_hz, SAMPLE_RATE * 0.49), btype="lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, signal)


def _sloped_noise(rng: np.random.Generator, num_samples: int, slope_db_per_octave: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls `slope_db_per_octave` per octave (-3: pink)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs_hz = np.fft.rfftfreq(num_samples, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(freqs_hz, 20.0) / 1000.0)
    spectrum *= 10.0 ** (slope_db_per_octave * octaves / 20.0)
    return np.fft.irfft(spectrum, num_samples)


def _slow_envelope(rng: np.random.Generator, num_samples: int, rate_hz: float, depth: float) -> np.ndarray:
    """A smooth random gain in [1 - depth, 1] that changes about `rate_hz` times a second."""
    num_points = max(int(num_samples / SAMPLE_RATE * rate_hz) + 2, 2)
    points = rng.uniform(1.0 - depth, 1.0, num_points)
    return np.interp(np.linspace(0, num_points - 1, num_samples), np.arange(num_points), points)


def _event_times(rng: np.random.Generator, num_samples: int, rate_hz: float, jitter: float) -> np.ndarray:
    """Sample indices of events about `rate_hz` per second; jitter 0 is a strict train, 1 is Poisson-like."""
    period = SAMPLE_RATE / rate_hz
    count = int(num_samples / period) + 1
    times = (np.arange(count) + rng.uniform(0, 1)) * period
    times += rng.uniform(-0.5, 0.5, count) * period * jitter
    return np.sort(times[(times >= 0) & (times < num_samples)].astype(int))


# ---- parameter samplers: one per family --------------------------------------------------------


def draw_noise_params(kind: str, rng: np.random.Generator) -> dict:
    """Random parameters of a noise of family `kind` (plain floats and ints, JSON-serialisable)."""
    if kind == "colored":
        return {"slope_db_per_octave": rng.uniform(-6.0, 1.5), "modulation_depth": rng.uniform(0.0, 0.5)}
    if kind == "bandpass":
        center_hz = _log_uniform(rng, 150.0, 5000.0)
        width_octaves = rng.uniform(0.3, 2.0)
        return {
            "center_hz": center_hz,
            "width_octaves": width_octaves,
            "order": int(rng.integers(1, 4)),
            "modulation_depth": rng.uniform(0.0, 0.6),
        }
    if kind == "hum":
        return {
            "mains_hz": float(rng.choice([50.0, 60.0])) * rng.uniform(0.99, 1.01),
            "num_harmonics": int(rng.integers(3, 16)),
            "harmonic_decay": rng.uniform(0.5, 0.95),
            "buzz": rng.uniform(0.0, 1.0),
            "floor_db": rng.uniform(-40.0, -20.0),
        }
    if kind == "clicks":
        return {
            "rate_hz": _log_uniform(rng, 1.5, 40.0),
            "jitter": rng.uniform(0.0, 1.0),
            "decay_ms": _log_uniform(rng, 0.5, 8.0),
            "center_hz": _log_uniform(rng, 500.0, 6000.0),
            "amplitude_spread": rng.uniform(0.0, 1.0),
        }
    if kind == "bursts":
        return {
            "rate_hz": rng.uniform(0.5, 4.0),
            "duration_ms": _log_uniform(rng, 40.0, 600.0),
            "center_hz": _log_uniform(rng, 200.0, 5000.0),
            "width_octaves": rng.uniform(0.5, 3.0),
            "floor_db": rng.uniform(-40.0, -15.0),
        }
    if kind == "siren":
        low_hz = _log_uniform(rng, 300.0, 1200.0)
        return {
            "low_hz": low_hz,
            "high_hz": low_hz * rng.uniform(1.3, 2.5),
            "sweep_hz": _log_uniform(rng, 0.15, 4.0),
            "shape": str(rng.choice(["sine", "saw", "square"])),
            "num_harmonics": int(rng.integers(1, 6)),
            "floor_db": rng.uniform(-40.0, -20.0),
        }
    if kind == "machinery":
        return {
            "rotation_hz": _log_uniform(rng, 8.0, 120.0),
            "num_harmonics": int(rng.integers(2, 10)),
            "noise_cutoff_hz": _log_uniform(rng, 300.0, 4000.0),
            "modulation_depth": rng.uniform(0.2, 0.9),
            "tonal_db": rng.uniform(-12.0, 3.0),
            "knock_rate_hz": rng.uniform(0.0, 6.0),
        }
    if kind == "rain":
        return {
            "drops_per_s": _log_uniform(rng, 150.0, 3000.0),
            "highpass_hz": _log_uniform(rng, 800.0, 4000.0),
            "rumble_db": rng.uniform(-30.0, -6.0),
            "drop_ms": _log_uniform(rng, 0.3, 3.0),
        }
    if kind == "babble":
        return {
            "num_talkers": int(rng.integers(3, 8)),
            "pitch_spread": rng.uniform(0.05, 0.2),
            "lowpass_hz": _log_uniform(rng, 2500.0, 7900.0),
        }
    raise ValueError(f"unknown noise kind {kind!r}; known kinds: {', '.join(NOISE_KINDS)}")


# ---- renderers ---------------------------------------------------------------------------------


def _render_colored(rng, n, slope_db_per_octave, modulation_depth):
    return _sloped_noise(rng, n, slope_db_per_octave) * _slow_envelope(rng, n, 2.0, modulation_depth)


def _render_bandpass(rng, n, center_hz, width_octaves, order, modulation_depth):
    low_hz = center_hz * 2.0 ** (-width_octaves / 2)
    high_hz = center_hz * 2.0 ** (width_octaves / 2)
    noise = _bandpass(rng.standard_normal(n), low_hz, high_hz, order)
    return noise * _slow_envelope(rng, n, 1.0, modulation_depth)


def _render_hum(rng, n, mains_hz, num_harmonics, harmonic_decay, buzz, floor_db):
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for k in range(1, num_harmonics + 1):
        if k * mains_hz >= SAMPLE_RATE / 2:
            break
        # buzz strengthens the odd harmonics of a saturated transformer
        gain = harmonic_decay ** (k - 1) * (1.0 + buzz * (k % 2 == 1 and k > 1))
        out += gain * np.sin(2 * np.pi * k * mains_hz * t + rng.uniform(0, 2 * np.pi))
    out *= _slow_envelope(rng, n, 0.5, 0.1)
    return out / np.max(np.abs(out)) + 10 ** (floor_db / 20) * rng.standard_normal(n)


def _click_shape(rng, decay_ms, center_hz):
    length = max(int(decay_ms * 6e-3 * SAMPLE_RATE), 8)
    envelope = np.exp(-np.arange(length) / (decay_ms * 1e-3 * SAMPLE_RATE))
    return _bandpass(rng.standard_normal(length), center_hz / 2, center_hz * 2, 2) * envelope


def _render_clicks(rng, n, rate_hz, jitter, decay_ms, center_hz, amplitude_spread):
    train = np.zeros(n)
    times = _event_times(rng, n, rate_hz, jitter)
    train[times] = np.exp(rng.normal(0.0, amplitude_spread, times.size))
    return fftconvolve(train, _click_shape(rng, decay_ms, center_hz))[:n] + 1e-3 * rng.standard_normal(n)


def _render_bursts(rng, n, rate_hz, duration_ms, center_hz, width_octaves, floor_db):
    gate = np.zeros(n)
    for start in _event_times(rng, n, rate_hz, 1.0):
        length = int(duration_ms * 1e-3 * SAMPLE_RATE * rng.uniform(0.5, 1.5))
        stop = min(start + length, n)
        attack = np.minimum(np.arange(stop - start) / (0.1 * length + 1), 1.0)
        gate[start:stop] = np.maximum(
            gate[start:stop], attack * np.exp(-3 * np.arange(stop - start) / length)
        )
    low_hz = center_hz * 2.0 ** (-width_octaves / 2)
    noise = _bandpass(rng.standard_normal(n), low_hz, center_hz * 2.0 ** (width_octaves / 2), 2)
    return noise * (gate + 10 ** (floor_db / 20))


def _render_siren(rng, n, low_hz, high_hz, sweep_hz, shape, num_harmonics, floor_db):
    t = np.arange(n) / SAMPLE_RATE
    phase = (sweep_hz * t + rng.uniform(0, 1)) % 1.0
    if shape == "sine":
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * phase)
    elif shape == "saw":
        sweep = phase
    else:
        sweep = (phase < 0.5).astype(float)
        sweep = np.convolve(sweep, np.ones(400) / 400, mode="same")  # soften the jumps
    freq_hz = low_hz * (high_hz / low_hz) ** sweep
    phase_rad = 2 * np.pi * np.cumsum(freq_hz) / SAMPLE_RATE
    out = np.zeros(n)
    for k in range(1, num_harmonics + 1):
        out += (0.6 ** (k - 1)) * np.sin(k * phase_rad) * (k * high_hz < SAMPLE_RATE / 2)
    return out / np.max(np.abs(out)) + 10 ** (floor_db / 20) * _sloped_noise(rng, n, -3.0) / 3


def _render_machinery(
    rng, n, rotation_hz, num_harmonics, noise_cutoff_hz, modulation_depth, tonal_db, knock_rate_hz
):
    t = np.arange(n) / SAMPLE_RATE
    wobble = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    phase_rad = 2 * np.pi * np.cumsum(rotation_hz * wobble) / SAMPLE_RATE
    modulation = 1.0 - modulation_depth * (0.5 + 0.5 * np.cos(phase_rad))
    noise = _lowpass(rng.standard_normal(n), noise_cutoff_hz, 2) * modulation
    noise /= np.std(noise)
    tones = sum(
        rng.uniform(0.3, 1.0) / k * np.sin(k * phase_rad + rng.uniform(0, 2 * np.pi))
        for k in range(1, num_harmonics + 1)
    )
    out = noise + 10 ** (tonal_db / 20) * tones / np.std(tones)
    if knock_rate_hz > 0.2:
        knocks = np.zeros(n)
        knocks[_event_times(rng, n, knock_rate_hz, 0.1)] = 4.0
        out += fftconvolve(knocks, _click_shape(rng, 6.0, 400.0))[:n]
    return out


def _render_rain(rng, n, drops_per_s, highpass_hz, rumble_db, drop_ms):
    drops = np.zeros(n)
    count = rng.poisson(drops_per_s * n / SAMPLE_RATE)
    np.add.at(drops, rng.integers(0, n, count), rng.pareto(4.0, count) * rng.choice([-1.0, 1.0], count))
    length = max(int(drop_ms * 5e-3 * SAMPLE_RATE), 4)
    drop_shape = np.exp(-np.arange(length) / (drop_ms * 1e-3 * SAMPLE_RATE))
    crackle = _highpass(fftconvolve(drops, drop_shape)[:n], highpass_hz, 2)
    rumble = _lowpass(rng.standard_normal(n), 400.0, 2)
    return crackle / (np.std(crackle) + 1e-12) + 10 ** (rumble_db / 20) * rumble / np.std(rumble)


def _render_babble(rng, n, num_talkers, pitch_spread, lowpass_hz, sentences, voices):
    """Several flite talkers reading sentences at once; pitch/rate varied by resampling."""
    from workflow_scripts.world.voices import render_flite  # flite is only needed for babble

    if not sentences:
        raise ValueError("babble noise needs sentences (sentences=[...])")
    out = np.zeros(n)
    for _ in range(num_talkers):
        voice = voices[int(rng.integers(len(voices)))]
        factor = float(np.exp(rng.normal(0.0, pitch_spread)))  # >1: higher and faster
        talker = []
        total = 0
        while total < n + SAMPLE_RATE:
            text = sentences[int(rng.integers(len(sentences)))]
            speech = render_flite(text, voice, float(rng.uniform(0.85, 1.2)))
            # reading at a different rate shifts pitch and formants together
            positions = np.arange(0, speech.size - 1, factor)
            speech = np.interp(positions, np.arange(speech.size), speech)
            speech = speech / (np.std(speech) + 1e-12)
            talker.append(speech)
            total += speech.size
        talker = np.concatenate(talker)
        start = int(rng.integers(0, talker.size - n))
        out += talker[start : start + n] * 10 ** (rng.uniform(-6.0, 0.0) / 20)
    return _lowpass(out, lowpass_hz, 2)


_RENDERERS = {
    "colored": _render_colored,
    "bandpass": _render_bandpass,
    "hum": _render_hum,
    "clicks": _render_clicks,
    "bursts": _render_bursts,
    "siren": _render_siren,
    "machinery": _render_machinery,
    "rain": _render_rain,
    "babble": _render_babble,
}


def make_noise(
    kind: str,
    rng: np.random.Generator,
    duration_s: float,
    sentences=None,
    voices=("kal16", "awb", "rms", "slt"),
    **params,
) -> np.ndarray:
    """A noise of family `kind`, `duration_s` long, 16 kHz float32 peak-normalised to 0.8.

    Parameters not given in `params` are drawn from `rng` (see draw_noise_params).
    Babble needs `sentences` to read and the flite `voices` to read them.
    """
    if kind not in _RENDERERS:
        raise ValueError(f"unknown noise kind {kind!r}; known kinds: {', '.join(NOISE_KINDS)}")
    if not duration_s > 0:
        raise ValueError(f"noise duration must be > 0 s, got {duration_s}")
    params = {**draw_noise_params(kind, rng), **params}
    num_samples = int(round(duration_s * SAMPLE_RATE))
    extra = {"sentences": list(sentences or []), "voices": list(voices)} if kind == "babble" else {}
    noise = _RENDERERS[kind](rng, num_samples, **params, **extra)
    noise = noise - np.mean(noise)
    rms = float(np.sqrt(np.mean(noise**2)))
    if not np.isfinite(rms) or rms == 0.0:
        raise RuntimeError(f"noise generator {kind!r} produced silent or invalid audio with {params}")
    noise = MAX_CREST * np.tanh(noise / (rms * MAX_CREST))
    return peak_normalize(noise.astype(np.float32), NOISE_PEAK)


def draw_noise_kinds(rng: np.random.Generator, n: int, kinds=NOISE_KINDS) -> list[str]:
    """n kinds, all distinct while n <= len(kinds); beyond that each kind repeats as evenly as possible."""
    kinds = list(kinds)
    if not kinds:
        raise ValueError("no noise kinds to draw from")
    drawn: list[str] = []
    while len(drawn) < n:
        drawn += [kinds[i] for i in rng.permutation(len(kinds))]
    return drawn[:n]


def draw_noise_set(
    rng: np.random.Generator,
    n: int,
    duration_s: float,
    sentences=None,
    kinds=NOISE_KINDS,
    voices=("kal16", "awb", "rms", "slt"),
) -> list[dict]:
    """n noises of distinct kinds (as far as possible) with random parameters.

    Returns dicts with `kind`, `name` (the kind: it names the noise in a noise folder),
    `params` and `audio`. Each noise draws from its own child generator, so noise i
    does not depend on the others' lengths.
    """
    if n < 1:
        raise ValueError(f"number of noises must be >= 1, got {n}")
    drawn = draw_noise_kinds(rng, n, kinds)
    children = rng.spawn(n)
    noise_set = []
    for kind, child in zip(drawn, children):
        params = draw_noise_params(kind, child)
        audio = make_noise(kind, child, duration_s, sentences=sentences, voices=voices, **params)
        noise_set.append({"kind": kind, "name": kind, "params": _plain(params), "audio": audio})
    return noise_set


def _plain(params: dict) -> dict:
    """numpy scalars to Python scalars (for JSON/CSV)."""
    return {
        key: (
            round(float(v), 4)
            if isinstance(v, (float, np.floating))
            else v.item() if isinstance(v, np.generic) else v
        )
        for key, v in params.items()
    }
