"""Bias add + PReLU + global layer norm of stacked TCN blocks, fused.

`prelu_gln(h, bias, slope, gamma, beta)` is gLN(PReLU(h + bias)) for K
stacked models: h (batch, K, C, T) contiguous, bias (K, C) or None, slope
(K, 1) (one PReLU slope per model), gamma / beta (K, C); the statistics are
those of the stacked model's eager gLN (per example and model over (C, T),
biased variance, eps inside the square root).

Eager PyTorch runs this as an add, a PReLU and a group norm: about seven
passes over the H-wide tensor forward and two or three of them kept for
backward. On a GPU with Triton it is two kernels forward (statistics, then
the normalised output; 3 passes) and two backward (per-group and
per-channel sums, then dh with the bias and slope gradients; 5 passes), and
only h and the (batch, K) mean and 1/std are kept. Every reduction is a
fixed-order sum of per-tile partials: the results are deterministic.

The same kernels serve the stacked ConvTasNet's other memory-bound ops:
- `gln(h, gamma, beta)`: the bottleneck gLN of the 512-channel encoder
  output (no bias, no PReLU: the kernels' PReLU is a compile-time switch);
- `conv_prelu_gln(h, weight, dilation, ...)`: the blocks' dilated depthwise
  conv (kernel 3) computed inside the kernels from h at t - d, t, t + d,
  then bias + PReLU + gLN; backward adds one kernel for d(h) and the conv
  weight's per-row partials (3 passes, where the conv's own forward and
  backward take 6);
- the mask and the decoder (`fused_mask`), and the skip buffer and the
  in-place gradient adds of the residual path (`fused_skip`).

`GradLink`: where a tensor has two consumers whose backwards run in a known
order, the second adds its gradient into the first's in place (a matrix
product with beta 1, or the gLN's backward kernel) instead of autograd
adding two tensors.

Every op takes `frames`: rows of T frames of which the first `frames` are the
signal. The stacked model pads its rows so (a 4 s crop's 7999 frames to
8000) because cuBLAS runs the 1x1 convs' matrix products with aligned kernels
only when a row's length is a multiple of 4: the padding is read as zeros,
left out of every statistic and gradient, and written as zeros.

Per-tile statistics are a tile mean and a centred sum of squares, merged
with Chan's formula, so large means do not cancel. On the CPU, in float64,
or without Triton, `prelu_gln` runs the eager composition
(`prelu_gln_reference`). `TRITON_INTERPRET=1` (set before the first call)
runs the Triton kernels on CPU tensors through Triton's interpreter, as the
tests do. Speed and accuracy on a GPU: bench/RESULTS.md, "Fused kernels".
"""

from __future__ import annotations

import functools
import os

import torch
from torch.nn import functional as F

EPS = 1e-8
# (elements per program = BLOCK_C x BLOCK_T, largest BLOCK_T, warps per program) of the element-wise
# kernels, forward and backward: the fastest of those tried (bench/RESULTS.md, "Fused kernels")
FORWARD_TILE = (4096, 1024, 8)
BACKWARD_TILE = (2048, 512, 4)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def triton_kernels():
    """The Triton kernels, imported on first use (None without Triton)."""
    try:
        import triton

        from workflow_scripts.model import fused_gln_kernels as k
    except Exception:  # noqa: BLE001 - no (working) Triton: the reference path runs
        return None
    return {"fwd_stats": k.fwd_stats, "fwd_apply": k.fwd_apply, "bwd_reduce": k.bwd_reduce,
            "bwd_apply": k.bwd_apply, "mask_fwd": k.mask_fwd, "mask_bwd": k.mask_bwd, "conv_bwd": k.conv_bwd,
            "decode_fwd": k.decode_fwd, "decode_bwd": k.decode_bwd, "next_power_of_2": triton.next_power_of_2}


def fused_available(device) -> bool:
    """Whether the Triton kernels can run on tensors of `device` (a CUDA
    device with Triton, or any device under TRITON_INTERPRET=1)."""
    device = torch.device(device)
    if not _interpreting() and not (device.type == "cuda" and torch.cuda.is_available()):
        return False
    return triton_kernels() is not None


def launch_shape(h, backward: bool = False):
    """Kernels, tile (BLOCK_C, BLOCK_T), warps, grid and tiles per group of one pass over h."""
    batch, num_models, channels, frames = h.shape
    kernels = triton_kernels()
    next_power_of_2 = kernels["next_power_of_2"]
    elements, max_block_t, num_warps = BACKWARD_TILE if backward else FORWARD_TILE
    block_t = min(max_block_t, next_power_of_2(frames))
    block_c = max(1, min(next_power_of_2(channels), elements // block_t))
    grid = (-(-frames // block_t), -(-channels // block_c), batch * num_models)
    return kernels, block_c, block_t, num_warps, grid, grid[0] * grid[1]


class _PreluGLN(torch.autograd.Function):
    """gLN(PReLU(conv(h) + bias)); conv: the depthwise conv of `weight` (K, C, 1, 3)
    at `dilation`, or none (weight None)."""

    @staticmethod
    def forward(ctx, h, weight, bias, slope, gamma, beta, eps, dilation, out=None, frames=None, link=None):
        batch, num_models, channels, stride = h.shape
        frames = stride if frames is None else frames
        kernels, block_c, block_t, num_warps, grid, num_parts = launch_shape(h)
        groups = batch * num_models
        has_bias, has_prelu, has_conv = bias is not None, slope is not None, weight is not None
        bias_arg = bias.contiguous() if has_bias else h  # not read without a bias
        slope = slope.reshape(-1).contiguous() if has_prelu else h  # not read without a PReLU
        weight = weight.reshape(num_models, channels, 3).contiguous() if has_conv else h  # nor without a conv
        gamma, beta = gamma.contiguous(), beta.contiguous()
        flags = {"HAS_BIAS": has_bias, "HAS_PRELU": has_prelu, "HAS_CONV": has_conv,
                 "BLOCK_C": block_c, "BLOCK_T": block_t, "num_warps": num_warps}
        parts = torch.empty(3, groups, num_parts, device=h.device, dtype=torch.float32)
        kernels["fwd_stats"][grid](
            h, bias_arg, slope, parts[0], parts[1], parts[2], num_models, channels, frames, stride, weight, dilation,
            **flags)
        if out is None:
            out = torch.empty(h.shape, device=h.device, dtype=torch.float32)
        mean = torch.empty(groups, device=h.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        kernels["fwd_apply"][grid](
            h, bias_arg, slope, gamma, beta, parts[0], parts[1], parts[2], out, out.stride(1), mean, rstd,
            num_models, channels, frames, stride, eps, weight, dilation,
            BLOCK_P=kernels["next_power_of_2"](num_parts), **flags)
        ctx.save_for_backward(h, weight, bias_arg, slope, gamma, mean, rstd)
        ctx.has_bias, ctx.has_prelu, ctx.has_conv, ctx.dilation = has_bias, has_prelu, has_conv, dilation
        ctx.frames, ctx.link = frames, link
        return out

    @staticmethod
    def backward(ctx, dy):
        h, weight, bias_arg, slope, gamma, mean, rstd = ctx.saved_tensors
        dy = _group_strided(dy)  # a skip buffer's slice is read in place
        batch, num_models, channels, stride = h.shape
        frames = ctx.frames
        kernels, block_c, block_t, num_warps, grid, num_parts = launch_shape(h, backward=True)
        groups = batch * num_models
        flags = {"HAS_BIAS": ctx.has_bias, "HAS_PRELU": ctx.has_prelu, "HAS_CONV": ctx.has_conv,
                 "BLOCK_C": block_c, "BLOCK_T": block_t, "num_warps": num_warps}
        group_parts = torch.empty(3, groups, num_parts, device=h.device, dtype=torch.float32)
        row_parts = torch.empty(3, batch, num_models, channels, grid[0], device=h.device, dtype=torch.float32)
        kernels["bwd_reduce"][grid](
            h, dy, dy.stride(1), bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1],
            row_parts[0], row_parts[1], num_models, channels, frames, stride, weight, ctx.dilation, **flags)
        # the gradient at the conv's output (at h without a conv); with a link, h's other gradient, added into
        dx = ctx.link.take(h) if ctx.link is not None and not ctx.has_conv else None
        accumulate = dx is not None
        dx = torch.empty_like(h) if dx is None else dx
        kernels["bwd_apply"][grid](
            h, dy, dy.stride(1), bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1],
            dx, row_parts[2], group_parts[2], num_models, channels, frames, stride, 1.0 / (channels * frames),
            weight, ctx.dilation, BLOCK_P=kernels["next_power_of_2"](num_parts), ACCUMULATE=accumulate, **flags)
        dh, dweight = dx, None
        if ctx.has_conv:
            dh = torch.empty_like(h)
            weight_parts = torch.empty(3, batch, num_models, channels, grid[0], device=h.device, dtype=torch.float32)
            kernels["conv_bwd"][grid](dx, h, weight, dh, weight_parts, num_models, channels, frames, stride,
                                      ctx.dilation, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
            dweight = weight_parts.sum((1, 4)).permute(1, 2, 0).reshape(num_models, channels, 1, 3)
        if not ctx.has_bias:  # partials not written
            row_parts = row_parts[:2]
        sums = row_parts.sum((1, 4))  # over examples and tiles along T: (2 or 3, K, C)
        dslope = (group_parts[2].view(batch, num_models, num_parts).sum((0, 2)).view(num_models, 1)
                  if ctx.has_prelu else None)
        return (dh, dweight, sums[2] if ctx.has_bias else None, dslope, sums[0], sums[1], None, None, None, None,
                None)


def _group_strided(t: torch.Tensor) -> torch.Tensor:
    """t (batch, K, C, T) as the kernels read it: rows of T contiguous frames,
    groups (example, model) at any equal spacing (a channel slice of a larger
    tensor); copied where it is not so laid out."""
    num_models, channels, frames = t.shape[1:]
    if (t.stride(3) == 1 and t.stride(2) == frames and t.stride(1) >= channels * frames
            and t.stride(0) == num_models * t.stride(1)):
        return t
    return t.contiguous()


def prelu_gln_reference(h, bias, slope, gamma, beta, eps=EPS):
    """The eager composition: bias add, PReLU (one slope per model), gLN."""
    x = h if bias is None else h + bias[..., None]
    batch, num_models, channels, frames = x.shape
    a = x.reshape(batch, num_models * channels, frames)
    if slope is not None:
        slopes = slope.reshape(num_models, 1).expand(num_models, channels).reshape(-1)
        a = F.prelu(a, slopes)
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
    if slope is not None and slope.numel() != num_models:
        raise ValueError(f"slope must hold one value per model ({num_models}), got shape {tuple(slope.shape)}")


def signal_frames(frames, h: torch.Tensor) -> int | None:
    """`frames` checked against h's rows; None where every frame is signal."""
    if frames is None or frames == h.shape[-1]:
        return None
    if not 0 < frames <= h.shape[-1]:
        raise ValueError(f"frames must be in 1..{h.shape[-1]} for rows of {h.shape[-1]} frames, got {frames}")
    return int(frames)


def on_signal(fn, frames: int | None, *tensors: torch.Tensor) -> torch.Tensor:
    """fn on the first `frames` frames of each (batch, K, C, T) tensor, the
    result zero-padded back to T frames (the reference ops' padding rule)."""
    if frames is None:
        return fn(*tensors)
    out = fn(*(t[..., :frames] for t in tensors))
    return F.pad(out, (0, tensors[0].shape[-1] - frames))


def prelu_gln(h, bias, slope, gamma, beta, eps=EPS, impl: str = "auto", frames: int | None = None,
              link: GradLink | None = None):
    """gLN(PReLU(h + bias[..., None])) per (example, model); see the module doc.
    bias None: no bias add; slope None: no PReLU (a plain gLN).

    impl "auto" runs the Triton kernels where `fused_available(h.device)` and
    every tensor is float32, else the eager reference; "triton" and
    "reference" force one.

    frames: the first `frames` of h's T frames are the signal, the rest
    padding (the stacked model pads rows so that its matrix products run
    aligned): the padding is left out of the statistics, its gradient is zero
    and the output holds zeros there. None: all T frames are signal.
    """
    _check_shapes(h, bias, slope, gamma, beta)
    frames = signal_frames(frames, h)
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    tensors = [t for t in (h, bias, slope, gamma, beta) if t is not None]
    use_triton = impl == "triton" or (
        impl == "auto" and all(t.dtype == torch.float32 for t in tensors) and fused_available(h.device))
    if not use_triton:
        return on_signal(lambda x: prelu_gln_reference(x, bias, slope, gamma, beta, eps), frames, h)
    if triton_kernels() is None:
        raise RuntimeError("the fused gLN kernels need Triton, which cannot be imported here")
    if link is not None:
        link.accepts = True
    return _PreluGLN.apply(h.contiguous(), None, bias, slope, gamma, beta, float(eps), 1, None, frames, link)


def depthwise_conv_reference(h, weight, dilation):
    """Dilated depthwise conv, "same" zero padding: h (batch, K, C, T), weight (K, C, 1, P)."""
    batch, num_models, channels, frames = h.shape
    kernel = weight.shape[-1]
    out = F.conv1d(h.reshape(batch, num_models * channels, frames), weight.reshape(num_models * channels, 1, kernel),
                   padding=(kernel - 1) * dilation // 2, dilation=dilation, groups=num_models * channels)
    return out.view(h.shape)


def conv_prelu_gln(h, weight, dilation, bias, slope, gamma, beta, eps=EPS, impl: str = "auto", out=None,
                   frames: int | None = None):
    """gLN(PReLU(depthwise_conv(h) + bias)): the depthwise conv (dilation
    `dilation`, "same" padding, weight (K, C, 1, 3); other kernel sizes run
    the conv unfused) computed inside
    the fused kernels from h and its neighbours at +-dilation, so neither the
    conv's output nor its gradient passes through memory as a separate op;
    backward adds one kernel (d(h) and the weight gradient's fixed-order
    partials). Fused like `prelu_gln` (impl).

    `out`: a channel slice of a `skip_buffer` that the fused kernels write the
    result into (and return); unfused, it is left alone and a new tensor
    returned (`concat_blocks` then concatenates). `frames`: as `prelu_gln`'s
    (the conv sees zeros past the signal's end)."""
    _check_shapes(h, bias, slope, gamma, beta)
    frames = signal_frames(frames, h)
    if weight.dim() != 4 or tuple(weight.shape[:3]) != (h.shape[1], h.shape[2], 1):
        raise ValueError(f"weight must be {(h.shape[1], h.shape[2], 1)} + (kernel,) for h of shape "
                         f"{tuple(h.shape)}, got {tuple(weight.shape)}")
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    tensors = [t for t in (h, weight, bias, slope, gamma, beta) if t is not None]
    if impl == "triton" and weight.shape[-1] != 3:
        raise ValueError(f"the fused depthwise conv takes kernel 3, got {weight.shape[-1]}")
    use_triton = impl == "triton" or (
        impl == "auto" and weight.shape[-1] == 3
        and all(t.dtype == torch.float32 for t in tensors) and fused_available(h.device))
    if not use_triton:
        return on_signal(lambda x: prelu_gln(depthwise_conv_reference(x, weight, dilation), bias, slope, gamma,
                                              beta, eps, impl="reference" if impl == "reference" else "auto"),
                          frames, h)
    if out is not None and (out.shape != h.shape or out.dtype != torch.float32 or out.stride(-1) != 1
                            or out.stride(2) != h.shape[3] or out.stride(0) != out.stride(1) * h.shape[1]):
        raise ValueError(f"out must be a (batch, K, C, T) channel slice of a skip_buffer, got shape "
                         f"{tuple(out.shape)}, strides {out.stride()}")
    return _PreluGLN.apply(h.contiguous(), weight, bias, slope, gamma, beta, float(eps), int(dilation), out,
                           frames)


class GradLink:
    """Two consumers of one tensor whose backwards run in a known order: the
    first leaves here the gradient it returns for the tensor (or, returning
    None, hands it over), the second adds its own into it in place. A block's
    residual conv and input conv (the block lies between them), and the
    mask's product and the bottleneck gLN of the encoder output (see
    `fused_skip` and `fused_mask`)."""

    grad = None
    accepts = False  # the second consumer runs the fused kernels, which add into `grad`

    def give(self, grad: torch.Tensor) -> None:
        """The first consumer hands its gradient over (and returns None for the tensor)."""
        self.grad = grad

    @staticmethod
    def accepted(link: GradLink | None) -> GradLink | None:
        """`link` where its second consumer runs the fused kernels that add into it, else None (autograd
        then adds the two gradients)."""
        return link if link is not None and link.accepts else None

    def take(self, like: torch.Tensor) -> torch.Tensor | None:
        """The gradient left here, if laid out as `like` (contiguous); once."""
        grad, self.grad = self.grad, None
        if grad is None or grad.shape != like.shape or grad.dtype != like.dtype or not grad.is_contiguous():
            return None
        return grad


def gln(h, gamma, beta, eps=EPS, frames: int | None = None, link: GradLink | None = None):
    """gLN alone (no bias, no PReLU), fused like `prelu_gln`.
    `link`: the one a later `sigmoid_mask` or `mask_decode` of h was given:
    backward adds h's gradient into the one the mask's backward left there
    (in the kernel that writes it: 2 passes over h fewer than autograd's add)."""
    return prelu_gln(h, None, None, gamma, beta, eps, frames=frames, link=link)


__all__ = [
    "BACKWARD_TILE",
    "FORWARD_TILE",
    "GradLink",
    "conv_prelu_gln",
    "depthwise_conv_reference",
    "fused_available",
    "gln",
    "prelu_gln",
    "prelu_gln_reference",
]
