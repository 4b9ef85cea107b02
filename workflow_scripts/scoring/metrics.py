"""Speech-enhancement metrics: SDR (the challenge's), SI-SDR, eSTOI, PESQ.

SDR is the GenDA challenge's: asteroid's single-source SNR of zero-mean
signals, 10 log10(||s||^2 / ||s - s_hat||^2). It is scale-dependent, unlike
SI-SDR. Numpy versions score files; torch versions train models.

A metric that cannot be computed (silent reference, too short for PESQ,
no utterance detected) is NaN with a reason, through `safe_metric`; never 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

# Floors of the energies in the SDR ratios. Torch: asteroid's 1e-8 (float32
# training). Numpy (float64 scoring): smaller, so that near-perfect estimates
# still score very high; the two agree wherever SDR < ~80 dB.
EPS = 1e-8
NP_EPS = 1e-12


class MetricError(ValueError):
    """A metric that is undefined for its inputs."""


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64).ravel()
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    if reference.size != estimate.size:
        raise MetricError(f"length mismatch: reference {reference.size}, estimate {estimate.size} samples")
    if reference.size == 0:
        raise MetricError("empty signals")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(estimate))):
        raise MetricError("non-finite samples")
    return reference, estimate


def _zero_mean_pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    if not np.any(reference):
        raise MetricError("reference is silent (constant)")
    return reference, estimate


def sdr_db(reference, estimate) -> float:
    """The challenge's SDR in dB: scale-dependent SNR of zero-mean signals."""
    reference, estimate = _zero_mean_pair(reference, estimate)
    target_energy = np.sum(reference**2)
    error_energy = np.sum((reference - estimate) ** 2)
    return float(10.0 * np.log10(target_energy / (error_energy + NP_EPS) + NP_EPS))


def si_sdr_db(reference, estimate) -> float:
    """Scale-invariant SDR in dB (zero-mean, reference projected onto)."""
    reference, estimate = _zero_mean_pair(reference, estimate)
    scale = np.dot(estimate, reference) / (np.dot(reference, reference) + NP_EPS)
    target = scale * reference
    error_energy = np.sum((estimate - target) ** 2)
    return float(10.0 * np.log10(np.sum(target**2) / (error_energy + NP_EPS) + NP_EPS))


def sdr_improvement_db(reference, estimate, mixture) -> float:
    """SDR of the estimate minus SDR of the unprocessed mixture."""
    return sdr_db(reference, estimate) - sdr_db(reference, mixture)


def estoi(reference, estimate, fs: int = 16000) -> float:
    """Extended STOI (pystoi, extended=True)."""
    from pystoi import stoi

    reference, estimate = _pair(reference, estimate)
    if not np.any(reference):
        raise MetricError("reference is silent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = stoi(reference, estimate, fs, extended=True)
    # pystoi warns and returns 1e-5 when too few non-silent frames remain
    for warning in caught:
        if "Not enough STFT frames" in str(warning.message):
            raise MetricError("eSTOI: too few non-silent frames")
    return float(value)


def pesq_wb(reference, degraded, fs: int = 16000) -> float:
    """Wide-band PESQ (MOS-LQO) with the `pesq` package."""
    from pesq import pesq

    reference, degraded = _pair(reference, degraded)
    if not np.any(reference) or not np.any(degraded):
        raise MetricError("PESQ: silent signal")
    return float(pesq(fs, reference.astype(np.float32), degraded.astype(np.float32), "wb"))


def safe_metric(fn, *args, **kwargs) -> tuple[float, str]:
    """Run a metric; on failure return (NaN, reason) instead of raising."""
    name = getattr(fn, "__name__", str(fn))
    try:
        value = float(fn(*args, **kwargs))
    except Exception as exc:  # pesq raises RuntimeError subclasses with bytes messages
        message = exc.args[0] if exc.args else ""
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        return float("nan"), f"{name}: {type(exc).__name__}: {message}".rstrip(": ")
    if not np.isfinite(value):
        return float("nan"), f"{name}: non-finite value {value}"
    return value, ""


# ---- torch versions for training -------------------------------------------


def _zero_mean(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def sdr_torch(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-example SDR in dB over the last axis (the challenge's SNR)."""
    estimate, reference = _zero_mean(estimate), _zero_mean(reference)
    ratio = reference.pow(2).sum(-1) / ((reference - estimate).pow(2).sum(-1) + EPS)
    return 10.0 * torch.log10(ratio + EPS)


def si_sdr_torch(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-example SI-SDR in dB over the last axis."""
    estimate, reference = _zero_mean(estimate), _zero_mean(reference)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + EPS)
    target = scale * reference
    ratio = target.pow(2).sum(-1) / ((estimate - target).pow(2).sum(-1) + EPS)
    return 10.0 * torch.log10(ratio + EPS)


def neg_sdr_loss(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Batch mean of -SDR (dB)."""
    return -sdr_torch(estimate, reference).mean()
