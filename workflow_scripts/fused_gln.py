"""Bias add + PReLU + global layer norm of stacked TCN blocks, fused.

`prelu_gln(h, bias, slope, gamma, beta)` is gLN(PReLU(h + bias)) for K
stacked models: h (batch, K, C, T) contiguous, bias (K, C) or None, slope
(K, 1) (one PReLU slope per model), gamma / beta (K, C); the statistics are
those of `stacked._global_layer_norm` (per example and model over (C, T),
biased variance, eps inside the square root).

Eager PyTorch runs this as an add, a PReLU and a group norm: about seven
passes over the H-wide tensor forward and two or three of them kept for
backward. On a GPU with Triton it is two kernels forward (statistics, then
the normalised output; 3 passes) and two backward (per-group and
per-channel sums, then dh with the bias and slope gradients; 5 passes), and
only h and the (batch, K) mean and 1/std are kept. Every reduction is a
fixed-order sum of per-tile partials: the results are deterministic.

Per-tile statistics are a tile mean and a centred sum of squares, merged
with Chan's formula, so large means do not cancel. On the CPU, in float64,
or without Triton, `prelu_gln` runs the eager composition
(`prelu_gln_reference`). `TRITON_INTERPRET=1` (set before the first call)
runs the Triton kernels on CPU tensors through Triton's interpreter, as the
tests do.

On an H100 (bench/fused_gln_bench.py, bench/h100_2026-11-25/fused_call*.json):
the op alone 3-4x faster forward and 2-3x forward + backward than eager (2.8-2.9
TB/s forward); a stacked TF32 training step 13-35% faster with 12-22% less
peak memory, gradients as close to a float64 step as eager's.
"""

from __future__ import annotations

import functools
import os

import torch
from torch.nn import functional as F

EPS = 1e-8
# per pass: (elements per program = BLOCK_C x BLOCK_T, largest BLOCK_T, warps per program); the
# fastest of those tried on an H100 (bench/fused_gln_bench.py --sections tune)
TILES = {"forward": (4096, 1024, 8), "backward": (2048, 512, 4)}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def _kernels():
    """The Triton kernels, imported on first use (None without Triton)."""
    try:
        import triton

        from workflow_scripts import fused_gln_kernels as k
    except Exception:  # noqa: BLE001 - no (working) Triton: the reference path runs
        return None
    return {"fwd_stats": k.fwd_stats, "fwd_apply": k.fwd_apply, "bwd_reduce": k.bwd_reduce,
            "bwd_apply": k.bwd_apply, "next_power_of_2": triton.next_power_of_2}


def fused_available(device) -> bool:
    """Whether the Triton kernels can run on tensors of `device` (a CUDA
    device with Triton, or any device under TRITON_INTERPRET=1)."""
    device = torch.device(device)
    if not _interpreting() and not (device.type == "cuda" and torch.cuda.is_available()):
        return False
    return _kernels() is not None


def _launch_shape(h, tiles):
    """Kernels, tile (BLOCK_C, BLOCK_T), warps, grid and tiles per group of one pass."""
    batch, num_models, channels, frames = h.shape
    kernels = _kernels()
    next_power_of_2 = kernels["next_power_of_2"]
    elements, max_block_t, num_warps = tiles
    block_t = min(max_block_t, next_power_of_2(frames))
    block_c = max(1, min(next_power_of_2(channels), elements // block_t))
    grid = (-(-frames // block_t), -(-channels // block_c), batch * num_models)
    return kernels, block_c, block_t, num_warps, grid, grid[0] * grid[1]


class _PreluGLN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, bias, slope, gamma, beta, eps):
        batch, num_models, channels, frames = h.shape
        kernels, block_c, block_t, num_warps, grid, num_parts = _launch_shape(h, TILES["forward"])
        groups = batch * num_models
        has_bias = bias is not None
        bias_arg = bias.contiguous() if has_bias else h  # not read without a bias
        slope, gamma, beta = slope.reshape(-1).contiguous(), gamma.contiguous(), beta.contiguous()
        parts = torch.empty(3, groups, num_parts, device=h.device, dtype=torch.float32)
        kernels["fwd_stats"][grid](
            h, bias_arg, slope, parts[0], parts[1], parts[2], num_models, channels, frames,
            HAS_BIAS=has_bias, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        out = torch.empty(h.shape, device=h.device, dtype=torch.float32)
        mean = torch.empty(groups, device=h.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        block_p = kernels["next_power_of_2"](num_parts)
        kernels["fwd_apply"][grid](
            h, bias_arg, slope, gamma, beta, parts[0], parts[1], parts[2], out, mean, rstd,
            num_models, channels, frames, eps,
            HAS_BIAS=has_bias, BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_P=block_p, num_warps=num_warps)
        ctx.save_for_backward(h, bias_arg, slope, gamma, mean, rstd)
        ctx.has_bias = has_bias
        return out

    @staticmethod
    def backward(ctx, dy):
        h, bias_arg, slope, gamma, mean, rstd = ctx.saved_tensors
        dy = dy.contiguous()
        batch, num_models, channels, frames = h.shape
        kernels, block_c, block_t, num_warps, grid, num_parts = _launch_shape(h, TILES["backward"])
        groups = batch * num_models
        block_p = kernels["next_power_of_2"](num_parts)
        group_parts = torch.empty(3, groups, num_parts, device=h.device, dtype=torch.float32)
        row_parts = torch.empty(3, batch, num_models, channels, grid[0], device=h.device, dtype=torch.float32)
        kernels["bwd_reduce"][grid](
            h, dy, bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1], row_parts[0], row_parts[1],
            num_models, channels, frames,
            HAS_BIAS=ctx.has_bias, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        dh = torch.empty_like(h)
        kernels["bwd_apply"][grid](
            h, dy, bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1],
            dh, row_parts[2], group_parts[2], num_models, channels, frames, 1.0 / (channels * frames),
            HAS_BIAS=ctx.has_bias, BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_P=block_p, num_warps=num_warps)
        dgamma, dbeta, dbias = row_parts.sum((1, 4))  # over examples and tiles along T: (3, K, C)
        dslope = group_parts[2].view(batch, num_models, num_parts).sum((0, 2))
        return (dh, dbias if ctx.has_bias else None, dslope.view(num_models, 1), dgamma, dbeta, None)


def prelu_gln_reference(h, bias, slope, gamma, beta, eps=EPS):
    """The eager composition: bias add, PReLU (one slope per model), gLN."""
    x = h if bias is None else h + bias[..., None]
    batch, num_models, channels, frames = x.shape
    slopes = slope.reshape(num_models, 1).expand(num_models, channels).reshape(-1)
    a = F.prelu(x.reshape(batch, num_models * channels, frames), slopes)
    out = F.group_norm(a, num_models, gamma.reshape(-1), beta.reshape(-1), eps)
    return out.view(x.shape)


def _check_shapes(h, bias, slope, gamma, beta) -> None:
    if h.dim() != 4:
        raise ValueError(f"h must be (batch, K, C, T), got shape {tuple(h.shape)}")
    _, num_models, channels, _ = h.shape
    expected = {"gamma": (gamma, (num_models, channels)), "beta": (beta, (num_models, channels))}
    if bias is not None:
        expected["bias"] = (bias, (num_models, channels))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must be {shape} for h of shape {tuple(h.shape)}, got {tuple(tensor.shape)}")
    if slope.numel() != num_models:
        raise ValueError(f"slope must hold one value per model ({num_models}), got shape {tuple(slope.shape)}")


def prelu_gln(h, bias, slope, gamma, beta, eps=EPS, impl: str = "auto"):
    """gLN(PReLU(h + bias[..., None])) per (example, model); see the module doc.

    impl "auto" runs the Triton kernels where `fused_available(h.device)` and
    every tensor is float32, else the eager reference; "triton" and
    "reference" force one.
    """
    _check_shapes(h, bias, slope, gamma, beta)
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    tensors = [t for t in (h, bias, slope, gamma, beta) if t is not None]
    use_triton = impl == "triton" or (
        impl == "auto" and all(t.dtype == torch.float32 for t in tensors) and fused_available(h.device))
    if not use_triton:
        return prelu_gln_reference(h, bias, slope, gamma, beta, eps)
    if _kernels() is None:
        raise RuntimeError("the fused gLN kernels need Triton, which cannot be imported here")
    return _PreluGLN.apply(h.contiguous(), bias, slope, gamma, beta, float(eps))


__all__ = ["fused_available", "prelu_gln", "prelu_gln_reference"]
