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

The same kernels serve the rest of a stacked ConvTasNet's memory-bound ops
(`StackedConvTasNet(fused=True)`, each a stage of STAGES):
- `gln(h, gamma, beta)`: the bottleneck gLN of the 512-channel encoder
  output (no bias, no PReLU: the kernels' PReLU is a compile-time switch);
- `conv_prelu_gln(h, weight, dilation, ...)`: the blocks' dilated depthwise
  conv (kernel 3) computed inside the kernels from h at t - d, t, t + d,
  then bias + PReLU + gLN; backward adds one kernel for d(h) and the conv
  weight's per-row partials (3 passes, where the conv's own forward and
  backward took 6 at a third of the bandwidth);
- `skip_buffer` / `concat_blocks`: the blocks' outputs written by those
  kernels into channel slices of one (batch, K, blocks x H, T) buffer, the
  skip convs' input, instead of concatenated afterwards;
- `sigmoid_mask(score, bias, x)`: sigmoid(score + bias) * x in one pass
  forward and one backward (d(bias) from per-row partials);
- `mask_decode(score, bias, x, weight)`: that product and the decoder's
  matrix product in one kernel (tl.dot per tile), the masked tensor and its
  gradient never stored;
- `residual_conv` / `input_conv`, `SkipGrad` and `GradLink`: where a tensor
  has two consumers whose backwards run in a known order, the second adds
  its gradient into the first's in place (a matrix product with beta 1, or
  the gLN's backward kernel) instead of autograd adding two tensors.

Every op takes `frames`: rows of T frames of which the first `frames` are the
signal. `StackedConvTasNet` pads its rows so (a 4 s crop's 7999 frames to
8000) because cuBLAS runs the 1x1 convs' matrix products with aligned kernels
only when a row's length is a multiple of 4: the padding is read as zeros,
left out of every statistic and gradient, and written as zeros.

Per-tile statistics are a tile mean and a centred sum of squares, merged
with Chan's formula, so large means do not cancel. On the CPU, in float64,
or without Triton, `prelu_gln` runs the eager composition
(`prelu_gln_reference`). `TRITON_INTERPRET=1` (set before the first call)
runs the Triton kernels on CPU tensors through Triton's interpreter, as the
tests do.

On an H100 (bench/fused_gln_bench.py, bench/h100_2026-11-25/fused_call*.json):
the op alone 3-4x faster forward and 2-3x forward + backward than eager (2.8-2.9
TB/s forward); a stacked TF32 training step 13-35% faster with 12-22% less
peak memory, gradients as close to a float64 step as eager's. With the four
stages (fused2_call*.json): a further 17-25% off the step where the GPU is
the limit (K >= 16, small and medium K7) and 14-25% less peak memory; every
fused kernel at 2.1-3.0 TB/s.
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
# what StackedConvTasNet(fused=True) fuses beyond the blocks' chains (bench/fused_gln_bench.py takes
# stages out to measure each): the bottleneck gLN of the encoder output (`gln`), the mask's bias +
# sigmoid + product (`sigmoid_mask`), the blocks' depthwise conv inside the second chain
# (`conv_prelu_gln`), the blocks' outputs written straight into the skip convs' input (`skip_buffer`,
# `concat_blocks`), the residual convs' input gradients added into the skip buffer's gradient by their
# matrix products (`residual_conv`, `input_conv`), the encoder output's gradient from the mask added into
# by the bottleneck gLN's backward kernel (`GradLink` of `gln` and `sigmoid_mask`), the mask's product and
# the decoder's matrix product in one kernel (`mask_decode`)
STAGES = {"bottleneck", "mask", "depthwise", "skip", "residual", "encoder_grad", "decoder"}
# bytes each kernel moves at least (tensor passes x tensor bytes), summed per kernel name while a
# dict (the bench's profile sets one); None: not counted
TRAFFIC = None


def _count(name: str, passes: int, tensor: torch.Tensor) -> None:
    if TRAFFIC is not None:
        TRAFFIC[name] = TRAFFIC.get(name, 0) + passes * tensor.numel() * tensor.element_size()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def _kernels():
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
    """gLN(PReLU(conv(h) + bias)); conv: the depthwise conv of `weight` (K, C, 1, 3)
    at `dilation`, or none (weight None)."""

    @staticmethod
    def forward(ctx, h, weight, bias, slope, gamma, beta, eps, dilation, out=None, frames=None, link=None):
        batch, num_models, channels, stride = h.shape
        frames = stride if frames is None else frames
        kernels, block_c, block_t, num_warps, grid, num_parts = _launch_shape(h, TILES["forward"])
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
        _count("fwd_stats", 1, h)
        if out is None:
            out = torch.empty(h.shape, device=h.device, dtype=torch.float32)
        mean = torch.empty(groups, device=h.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        kernels["fwd_apply"][grid](
            h, bias_arg, slope, gamma, beta, parts[0], parts[1], parts[2], out, out.stride(1), mean, rstd,
            num_models, channels, frames, stride, eps, weight, dilation,
            BLOCK_P=kernels["next_power_of_2"](num_parts), **flags)
        _count("fwd_apply", 2, h)
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
        kernels, block_c, block_t, num_warps, grid, num_parts = _launch_shape(h, TILES["backward"])
        groups = batch * num_models
        flags = {"HAS_BIAS": ctx.has_bias, "HAS_PRELU": ctx.has_prelu, "HAS_CONV": ctx.has_conv,
                 "BLOCK_C": block_c, "BLOCK_T": block_t, "num_warps": num_warps}
        group_parts = torch.empty(3, groups, num_parts, device=h.device, dtype=torch.float32)
        row_parts = torch.empty(3, batch, num_models, channels, grid[0], device=h.device, dtype=torch.float32)
        kernels["bwd_reduce"][grid](
            h, dy, dy.stride(1), bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1],
            row_parts[0], row_parts[1], num_models, channels, frames, stride, weight, ctx.dilation, **flags)
        _count("bwd_reduce", 2, h)
        # the gradient at the conv's output (at h without a conv); with a link, h's other gradient, added into
        dx = ctx.link.take(h) if ctx.link is not None and not ctx.has_conv else None
        accumulate = dx is not None
        dx = torch.empty_like(h) if dx is None else dx
        kernels["bwd_apply"][grid](
            h, dy, dy.stride(1), bias_arg, slope, gamma, mean, rstd, group_parts[0], group_parts[1],
            dx, row_parts[2], group_parts[2], num_models, channels, frames, stride, 1.0 / (channels * frames),
            weight, ctx.dilation, BLOCK_P=kernels["next_power_of_2"](num_parts), ACCUMULATE=accumulate, **flags)
        _count("bwd_apply", 4 if accumulate else 3, h)
        dh, dweight = dx, None
        if ctx.has_conv:
            dh = torch.empty_like(h)
            weight_parts = torch.empty(3, batch, num_models, channels, grid[0], device=h.device, dtype=torch.float32)
            kernels["conv_bwd"][grid](dx, h, weight, dh, weight_parts, num_models, channels, frames, stride,
                                      ctx.dilation, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
            _count("conv_bwd", 3, h)
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


def _signal_frames(frames, h: torch.Tensor) -> int | None:
    """`frames` checked against h's rows; None where every frame is signal."""
    if frames is None or frames == h.shape[-1]:
        return None
    if not 0 < frames <= h.shape[-1]:
        raise ValueError(f"frames must be in 1..{h.shape[-1]} for rows of {h.shape[-1]} frames, got {frames}")
    return int(frames)


def _on_signal(fn, frames: int | None, *tensors: torch.Tensor) -> torch.Tensor:
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
    padding (`StackedConvTasNet` pads rows so that its matrix products run
    aligned): the padding is left out of the statistics, its gradient is zero
    and the output holds zeros there. None: all T frames are signal.
    """
    _check_shapes(h, bias, slope, gamma, beta)
    frames = _signal_frames(frames, h)
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    tensors = [t for t in (h, bias, slope, gamma, beta) if t is not None]
    use_triton = impl == "triton" or (
        impl == "auto" and all(t.dtype == torch.float32 for t in tensors) and fused_available(h.device))
    if not use_triton:
        return _on_signal(lambda x: prelu_gln_reference(x, bias, slope, gamma, beta, eps), frames, h)
    if _kernels() is None:
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
    partials). Fused where "depthwise" is in STAGES, like `prelu_gln`'s impl.

    `out`: a channel slice of a `skip_buffer` that the fused kernels write the
    result into (and return); unfused, it is left alone and a new tensor
    returned (`concat_blocks` then concatenates). `frames`: as `prelu_gln`'s
    (the conv sees zeros past the signal's end)."""
    _check_shapes(h, bias, slope, gamma, beta)
    frames = _signal_frames(frames, h)
    if weight.dim() != 4 or tuple(weight.shape[:3]) != (h.shape[1], h.shape[2], 1):
        raise ValueError(f"weight must be {(h.shape[1], h.shape[2], 1)} + (kernel,) for h of shape "
                         f"{tuple(h.shape)}, got {tuple(weight.shape)}")
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    tensors = [t for t in (h, weight, bias, slope, gamma, beta) if t is not None]
    if impl == "triton" and weight.shape[-1] != 3:
        raise ValueError(f"the fused depthwise conv takes kernel 3, got {weight.shape[-1]}")
    use_triton = impl == "triton" or (
        impl == "auto" and "depthwise" in STAGES and weight.shape[-1] == 3
        and all(t.dtype == torch.float32 for t in tensors) and fused_available(h.device))
    if not use_triton:
        return _on_signal(lambda x: prelu_gln(depthwise_conv_reference(x, weight, dilation), bias, slope, gamma,
                                              beta, eps, impl="reference" if impl == "reference" else "auto"),
                          frames, h)
    if out is not None and (out.shape != h.shape or out.dtype != torch.float32 or out.stride(-1) != 1
                            or out.stride(2) != h.shape[3] or out.stride(0) != out.stride(1) * h.shape[1]):
        raise ValueError(f"out must be a (batch, K, C, T) channel slice of a skip_buffer, got shape "
                         f"{tuple(out.shape)}, strides {out.stride()}")
    return _PreluGLN.apply(h.contiguous(), weight, bias, slope, gamma, beta, float(eps), int(dilation), out,
                           frames)


def skip_buffer(like: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A (batch, K, channels, T) float32 buffer (like `like`, (batch, K, *, T))
    for the blocks' outputs, written in place by `conv_prelu_gln(out=...)`:
    the skip convs' input without a concatenation. None where "skip" is not in
    STAGES or the kernels do not run (`concat_blocks` then concatenates)."""
    if not ({"skip", "depthwise"} <= STAGES and like.dtype == torch.float32 and fused_available(like.device)):
        return None
    batch, num_models, _, frames = like.shape
    return torch.empty(batch, num_models, channels, frames, device=like.device, dtype=torch.float32)


class _Blocks(torch.autograd.Function):
    """The filled skip buffer as the concatenation of the blocks' outputs (its
    slices). Backward hands the buffer's gradient to the residual convs
    (`SkipGrad`) and each block its slice of it."""

    @staticmethod
    def forward(ctx, buffer, skip_grad, *blocks):
        ctx.sizes = [block.shape[2] for block in blocks]
        ctx.skip_grad = skip_grad
        return buffer

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        if ctx.skip_grad is not None:
            ctx.skip_grad.grad = grad
        return (None, None, *grad.split(ctx.sizes, dim=2))


class SkipGrad:
    """One forward pass's skip buffer and, once backward has passed the skip
    convs, its gradient: `residual_conv` adds its input gradient into a
    block's slice of it in place, where autograd would add two tensors."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer
        self.grad = None

    def channels(self, block: torch.Tensor) -> int | None:
        """The first channel of `block`'s slice of the buffer; None if it is not one."""
        buffer = self.buffer
        if block._base is not buffer or block.stride() != buffer.stride():
            return None
        first, rest = divmod(block.storage_offset() - buffer.storage_offset(), buffer.stride(2))
        return first if rest == 0 and 0 <= first <= buffer.shape[2] - block.shape[2] else None


def concat_blocks(blocks: list, buffer: torch.Tensor | None, skip_grad: SkipGrad | None = None) -> torch.Tensor:
    """torch.cat(blocks, dim=2), without a copy where every block was written
    into consecutive channel slices of `buffer` (a `skip_buffer`); backward
    then fills `skip_grad` (the one the blocks' `residual_conv`s were given)."""
    offset = 0
    for block in blocks:
        if buffer is None or block._base is not buffer or block.storage_offset() != offset * buffer.shape[3]:
            return torch.cat(blocks, dim=2)
        offset += block.shape[2]
    if offset != buffer.shape[2]:
        return torch.cat(blocks, dim=2)
    if skip_grad is not None and skip_grad.buffer is not buffer:
        raise ValueError("skip_grad holds another buffer")
    return _Blocks.apply(buffer, skip_grad, *blocks)


def _add_product_(target: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> None:
    """target (batch, K, C, T) += weight (K, O, C) transposed times grad (batch, K, O, T), in place: one
    batched matrix product with beta 1 (target may be a channel slice of a larger tensor)."""
    weight_t = weight.transpose(1, 2).expand(grad.shape[0], -1, -1, -1).flatten(0, 1)
    target.flatten(0, 1).baddbmm_(weight_t, grad.flatten(0, 1))


def _weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.matmul(grad, x.transpose(-1, -2)).sum(0)


class GradLink:
    """Two consumers of one tensor whose backwards run in a known order: the
    first leaves here the gradient it returns for the tensor (or, returning
    None, hands it over), the second adds its own into it in place. A block's
    residual conv and input conv (the block lies between them), and the
    mask's product and the bottleneck gLN of the encoder output."""

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


class _ResidualConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, block, weight, bias, skip_grad, stream_grad):
        result = torch.matmul(weight, block)
        result += bias[..., None]
        result += out
        ctx.save_for_backward(block, weight)
        ctx.skip_grad, ctx.stream_grad = skip_grad, stream_grad
        ctx.first = None if skip_grad is None else skip_grad.channels(block)
        return result

    @staticmethod
    def backward(ctx, grad):
        block, weight = ctx.saved_tensors
        dweight, dbias = _weight_grad(grad, block), grad.sum((0, 3))
        if ctx.stream_grad is not None:
            ctx.stream_grad.grad = grad  # out's gradient, which the block's input conv adds into
        skip = None if ctx.first is None else ctx.skip_grad.grad
        if skip is None:  # autograd adds this to the block's other gradient
            return grad, torch.matmul(weight.transpose(1, 2), grad), dweight, dbias, None, None
        # the block's slice of the skip buffer's gradient; autograd hands the block that slice
        # (concat_blocks' backward ran first: the skip convs come last)
        _add_product_(skip[:, :, ctx.first:ctx.first + block.shape[2]], weight, grad)
        return grad, None, dweight, dbias, None, None


class _InputConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, weight, stream_grad):
        ctx.save_for_backward(out, weight)
        ctx.stream_grad = stream_grad
        return torch.matmul(weight, out)

    @staticmethod
    def backward(ctx, grad):
        out, weight = ctx.saved_tensors
        target = ctx.stream_grad.grad if ctx.stream_grad is not None else None
        ctx.stream_grad = None
        if target is None or target.shape != out.shape or not target.is_contiguous():
            return torch.matmul(weight.transpose(1, 2), grad), _weight_grad(grad, out), None
        _add_product_(target, weight, grad)
        return None, _weight_grad(grad, out), None


def residual_conv(out, block, weight, bias, skip_grad: SkipGrad | None = None,
                  stream_grad: GradLink | None = None):
    """out + (1x1 conv of block) per model: out (batch, K, O, T), block (batch,
    K, C, T), weight (K, O, C), bias (K, O); a TCN block's residual path.

    Where `block` is a slice of `skip_grad`'s buffer and "residual" is in
    STAGES, backward adds block's gradient through this conv into the buffer's
    gradient in place (one matrix product with beta 1), instead of returning
    it for autograd to add to the skip convs' part (2 passes over the block
    fewer); otherwise the eager ops. `stream_grad`: shared with the same
    block's `input_conv`."""
    if "residual" not in STAGES:
        return out + (torch.matmul(weight, block) + bias[..., None])
    return _ResidualConv.apply(out, block, weight, bias, skip_grad, stream_grad)


def input_conv(out, weight, stream_grad: GradLink | None = None):
    """A TCN block's input 1x1 conv (no bias) per model: weight (K, H, B) on
    the residual stream out (batch, K, B, T). Where "residual" is in STAGES and
    `stream_grad` is the block's residual conv's, backward adds out's
    gradient through this conv into the gradient the residual conv passed on
    (one matrix product with beta 1) instead of autograd adding the two."""
    if "residual" not in STAGES:
        return torch.matmul(weight, out)
    return _InputConv.apply(out, weight, stream_grad)


def gln(h, gamma, beta, eps=EPS, frames: int | None = None, link: GradLink | None = None):
    """gLN alone (no bias, no PReLU), fused where "bottleneck" is in STAGES.
    `link`: the one a later `sigmoid_mask` of h was given: backward adds h's
    gradient into the one the mask's backward left there (in the kernel that
    writes it: 2 passes over h fewer than autograd's add)."""
    if "bottleneck" not in STAGES:
        return prelu_gln(h, None, None, gamma, beta, eps, impl="reference", frames=frames)
    return prelu_gln(h, None, None, gamma, beta, eps, frames=frames, link=link)


class _SigmoidMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, score, bias, x, frames, link):
        kernels, block_c, block_t, num_warps, grid, _ = _launch_shape(score, TILES["forward"])
        out = torch.empty(score.shape, device=score.device, dtype=torch.float32)
        kernels["mask_fwd"][grid](score, bias, x, out, score.shape[1], score.shape[2], frames, score.shape[3],
                                  BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        _count("mask_fwd", 3, out)
        ctx.save_for_backward(score, bias, x)
        ctx.frames, ctx.link = frames, link
        return out

    @staticmethod
    def backward(ctx, dy):
        score, bias, x = ctx.saved_tensors
        dy = dy.contiguous()
        batch, num_models, channels, stride = score.shape
        kernels, block_c, block_t, num_warps, grid, _ = _launch_shape(score, TILES["backward"])
        dscore, dx = torch.empty_like(score), torch.empty_like(x)
        row_parts = torch.empty(batch, num_models, channels, grid[0], device=score.device, dtype=torch.float32)
        kernels["mask_bwd"][grid](score, bias, x, dy, dscore, dx, row_parts, num_models, channels, ctx.frames,
                                  stride, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        _count("mask_bwd", 5, dx)
        dx = dx if ctx.link is None else ctx.link.give(dx)  # handed to the gLN of x, which adds into it
        return dscore, row_parts.sum((0, 3)), dx, None, None


def sigmoid_mask_reference(score, bias, x):
    return torch.sigmoid(score + bias[..., None]) * x


def sigmoid_mask(score, bias, x, impl: str = "auto", frames: int | None = None, link: GradLink | None = None):
    """sigmoid(score + bias[..., None]) * x: score and x (batch, K, C, T), bias
    (K, C). Fused (one pass forward, one backward, d(bias) from fixed-order
    per-row partials) where "mask" is in STAGES, like `prelu_gln`'s impl.
    `frames`: as `prelu_gln`'s (zeros, and zero gradients, past the signal).
    `link`: shared with the `gln` that x went through earlier, which then adds
    its part of x's gradient into the mask's (fused path only)."""
    if score.shape != x.shape or score.dim() != 4 or tuple(bias.shape) != tuple(score.shape[1:3]):
        raise ValueError(f"sigmoid_mask: score {tuple(score.shape)}, bias {tuple(bias.shape)}, x {tuple(x.shape)}")
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    use_triton = impl == "triton" or (
        impl == "auto" and "mask" in STAGES and fused_available(score.device)
        and all(t.dtype == torch.float32 for t in (score, bias, x)))
    frames = _signal_frames(frames, score)
    if not use_triton:
        return _on_signal(lambda s, v: sigmoid_mask_reference(s, bias, v), frames, score, x)
    return _SigmoidMask.apply(score.contiguous(), bias.contiguous(), x.contiguous(),
                              score.shape[3] if frames is None else frames, GradLink.accepted(link))


# (BLOCK_C, BLOCK_T, warps) of the mask + decoder kernels, the fastest of those tried on an H100
# (bench/decode_tiles.py); tl.dot takes blocks of at least 16
DECODE_TILES = {"forward": (16, 128, 4), "backward": (64, 64, 4)}


class _MaskDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, score, bias, x, weight, frames, link):
        kernels = _kernels()
        batch, num_models, channels, stride = score.shape
        length = weight.shape[2]
        block_l = max(16, kernels["next_power_of_2"](length))
        block_c, block_t, num_warps = DECODE_TILES["forward"]
        block_c = max(16, min(block_c, kernels["next_power_of_2"](channels)))
        precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
        out = torch.empty(batch, num_models, length, stride, device=score.device, dtype=torch.float32)
        grid = (-(-stride // block_t), batch * num_models)
        kernels["decode_fwd"][grid](score, bias, x, weight, out, num_models, channels, frames, stride, length,
                                    BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_L=block_l, PRECISION=precision,
                                    num_warps=num_warps)
        _count("decode_fwd", 2, score)
        ctx.save_for_backward(score, bias, x, weight)
        ctx.frames, ctx.link, ctx.precision, ctx.block_l = frames, link, precision, block_l
        return out

    @staticmethod
    def backward(ctx, dy):
        score, bias, x, weight = ctx.saved_tensors
        kernels = _kernels()
        dy = dy.contiguous()
        batch, num_models, channels, stride = score.shape
        length = weight.shape[2]
        block_c, block_t, num_warps = DECODE_TILES["backward"]
        block_c = max(16, min(block_c, kernels["next_power_of_2"](channels)))
        grid = (-(-stride // block_t), -(-channels // block_c), batch * num_models)
        dscore, dx = torch.empty_like(score), torch.empty_like(x)
        row_parts = torch.empty(batch, num_models, channels, grid[0], device=score.device, dtype=torch.float32)
        weight_parts = torch.empty(batch, num_models, grid[0], channels, length, device=score.device,
                                   dtype=torch.float32)
        kernels["decode_bwd"][grid](score, bias, x, weight, dy, dscore, dx, row_parts, weight_parts, num_models,
                                    channels, ctx.frames, stride, length, BLOCK_C=block_c, BLOCK_T=block_t,
                                    BLOCK_L=ctx.block_l, PRECISION=ctx.precision, num_warps=num_warps)
        _count("decode_bwd", 4, score)
        dbias, dweight = row_parts.sum((0, 3)), weight_parts.sum((0, 2))
        dx = dx if ctx.link is None else ctx.link.give(dx)  # handed to the gLN of x, which adds into it
        return dscore, dbias, dx, dweight, None, None


def mask_decode(score, bias, x, weight, impl: str = "auto", frames: int | None = None,
                link: GradLink | None = None):
    """weight^T (sigmoid(score + bias[..., None]) * x): the mask's product and
    the decoder's matrix product, score and x (batch, K, C, T), bias (K, C),
    weight (K, C, L) -> (batch, K, L, T). Fused where "decoder" is in STAGES
    (one pass over score and x forward; backward computes the masked tensor's
    gradient inside the kernel, so that neither it nor the masked tensor is
    stored: 5 passes over a C-channel tensor fewer); otherwise `sigmoid_mask`
    then a matrix product. `frames`, `link`: as `sigmoid_mask`'s."""
    if weight.dim() != 3 or tuple(weight.shape[:2]) != tuple(score.shape[1:3]):
        raise ValueError(f"mask_decode: weight {tuple(weight.shape)} for score {tuple(score.shape)}")
    use_triton = impl == "triton" or (
        impl == "auto" and {"decoder", "mask"} <= STAGES and fused_available(score.device)
        and all(t.dtype == torch.float32 for t in (score, bias, x, weight)))
    if not use_triton:
        masked = sigmoid_mask(score, bias, x, impl="reference" if impl == "reference" else "auto", frames=frames,
                              link=link)
        return torch.matmul(weight.transpose(1, 2), masked)
    if score.shape != x.shape or score.dim() != 4 or tuple(bias.shape) != tuple(score.shape[1:3]):
        raise ValueError(f"mask_decode: score {tuple(score.shape)}, bias {tuple(bias.shape)}, x {tuple(x.shape)}")
    frames = _signal_frames(frames, score)
    return _MaskDecode.apply(score.contiguous(), bias.contiguous(), x.contiguous(), weight.contiguous(),
                             score.shape[3] if frames is None else frames, GradLink.accepted(link))


__all__ = [
    "GradLink",
    "SkipGrad",
    "concat_blocks",
    "conv_prelu_gln",
    "depthwise_conv_reference",
    "fused_available",
    "gln",
    "input_conv",
    "mask_decode",
    "prelu_gln",
    "prelu_gln_reference",
    "residual_conv",
    "sigmoid_mask",
    "sigmoid_mask_reference",
    "skip_buffer",
]
