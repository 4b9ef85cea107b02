"""The stacked ConvTasNet's mask and decoder, fused.

- `sigmoid_mask(score, bias, x)`: sigmoid(score + bias) * x in one pass
  forward and one backward (d(bias) from per-row partials);
- `mask_decode(score, bias, x, weight)`: that product and the decoder's
  matrix product in one kernel (tl.dot per tile), the masked tensor and its
  gradient never stored.

Both take `frames` and `link` as `fused_gln`'s ops do: the mask's backward
hands x's gradient to the bottleneck gLN of x (`fused_gln.gln`), whose
backward kernel adds its own part into it.
"""

from __future__ import annotations

import torch

from workflow_scripts.model.fused_gln import (
    GradLink,
    fused_available,
    launch_shape,
    on_signal,
    signal_frames,
    triton_kernels,
)

# (BLOCK_C, BLOCK_T, warps) of the mask + decoder kernels, forward and backward: the fastest of those tried
# (bench/RESULTS.md, "Fused kernels"); tl.dot takes blocks of at least 16
DECODE_FORWARD_TILE = (16, 128, 4)
DECODE_BACKWARD_TILE = (64, 64, 4)


class _SigmoidMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, score, bias, x, frames, link):
        kernels, block_c, block_t, num_warps, grid, _ = launch_shape(score)
        out = torch.empty(score.shape, device=score.device, dtype=torch.float32)
        kernels["mask_fwd"][grid](score, bias, x, out, score.shape[1], score.shape[2], frames, score.shape[3],
                                  BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        ctx.save_for_backward(score, bias, x)
        ctx.frames, ctx.link = frames, link
        return out

    @staticmethod
    def backward(ctx, dy):
        score, bias, x = ctx.saved_tensors
        dy = dy.contiguous()
        batch, num_models, channels, stride = score.shape
        kernels, block_c, block_t, num_warps, grid, _ = launch_shape(score, backward=True)
        dscore, dx = torch.empty_like(score), torch.empty_like(x)
        row_parts = torch.empty(batch, num_models, channels, grid[0], device=score.device, dtype=torch.float32)
        kernels["mask_bwd"][grid](score, bias, x, dy, dscore, dx, row_parts, num_models, channels, ctx.frames,
                                  stride, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=num_warps)
        dx = dx if ctx.link is None else ctx.link.give(dx)  # handed to the gLN of x, which adds into it
        return dscore, row_parts.sum((0, 3)), dx, None, None


def sigmoid_mask_reference(score, bias, x):
    return torch.sigmoid(score + bias[..., None]) * x


def sigmoid_mask(score, bias, x, impl: str = "auto", frames: int | None = None, link: GradLink | None = None):
    """sigmoid(score + bias[..., None]) * x: score and x (batch, K, C, T), bias
    (K, C). Fused (one pass forward, one backward, d(bias) from fixed-order
    per-row partials), like `fused_gln.prelu_gln`'s impl.
    `frames`: as `prelu_gln`'s (zeros, and zero gradients, past the signal).
    `link`: shared with the `gln` that x went through earlier, which then adds
    its part of x's gradient into the mask's (fused path only)."""
    if score.shape != x.shape or score.dim() != 4 or tuple(bias.shape) != tuple(score.shape[1:3]):
        raise ValueError(f"sigmoid_mask: score {tuple(score.shape)}, bias {tuple(bias.shape)}, x {tuple(x.shape)}")
    if impl not in ("auto", "triton", "reference"):
        raise ValueError(f"unknown impl {impl!r}; expected auto, triton or reference")
    use_triton = impl == "triton" or (
        impl == "auto" and fused_available(score.device)
        and all(t.dtype == torch.float32 for t in (score, bias, x)))
    frames = signal_frames(frames, score)
    if not use_triton:
        return on_signal(lambda s, v: sigmoid_mask_reference(s, bias, v), frames, score, x)
    return _SigmoidMask.apply(score.contiguous(), bias.contiguous(), x.contiguous(),
                              score.shape[3] if frames is None else frames, GradLink.accepted(link))


class _MaskDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, score, bias, x, weight, frames, link):
        kernels = triton_kernels()
        batch, num_models, channels, stride = score.shape
        length = weight.shape[2]
        block_l = max(16, kernels["next_power_of_2"](length))
        block_c, block_t, num_warps = DECODE_FORWARD_TILE
        block_c = max(16, min(block_c, kernels["next_power_of_2"](channels)))
        precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
        out = torch.empty(batch, num_models, length, stride, device=score.device, dtype=torch.float32)
        grid = (-(-stride // block_t), batch * num_models)
        kernels["decode_fwd"][grid](score, bias, x, weight, out, num_models, channels, frames, stride, length,
                                    BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_L=block_l, PRECISION=precision,
                                    num_warps=num_warps)
        ctx.save_for_backward(score, bias, x, weight)
        ctx.frames, ctx.link, ctx.precision, ctx.block_l = frames, link, precision, block_l
        return out

    @staticmethod
    def backward(ctx, dy):
        score, bias, x, weight = ctx.saved_tensors
        kernels = triton_kernels()
        dy = dy.contiguous()
        batch, num_models, channels, stride = score.shape
        length = weight.shape[2]
        block_c, block_t, num_warps = DECODE_BACKWARD_TILE
        block_c = max(16, min(block_c, kernels["next_power_of_2"](channels)))
        grid = (-(-stride // block_t), -(-channels // block_c), batch * num_models)
        dscore, dx = torch.empty_like(score), torch.empty_like(x)
        row_parts = torch.empty(batch, num_models, channels, grid[0], device=score.device, dtype=torch.float32)
        weight_parts = torch.empty(batch, num_models, grid[0], channels, length, device=score.device,
                                   dtype=torch.float32)
        kernels["decode_bwd"][grid](score, bias, x, weight, dy, dscore, dx, row_parts, weight_parts, num_models,
                                    channels, ctx.frames, stride, length, BLOCK_C=block_c, BLOCK_T=block_t,
                                    BLOCK_L=ctx.block_l, PRECISION=ctx.precision, num_warps=num_warps)
        dbias, dweight = row_parts.sum((0, 3)), weight_parts.sum((0, 2))
        dx = dx if ctx.link is None else ctx.link.give(dx)  # handed to the gLN of x, which adds into it
        return dscore, dbias, dx, dweight, None, None


def mask_decode(score, bias, x, weight, impl: str = "auto", frames: int | None = None,
                link: GradLink | None = None):
    """weight^T (sigmoid(score + bias[..., None]) * x): the mask's product and
    the decoder's matrix product, score and x (batch, K, C, T), bias (K, C),
    weight (K, C, L) -> (batch, K, L, T). Fused like `sigmoid_mask` (one
    pass over score and x forward; backward computes the masked tensor's
    gradient inside the kernel, so that neither it nor the masked tensor is
    stored: 5 passes over a C-channel tensor fewer); otherwise `sigmoid_mask`
    then a matrix product. `frames`, `link`: as `sigmoid_mask`'s."""
    if weight.dim() != 3 or tuple(weight.shape[:2]) != tuple(score.shape[1:3]):
        raise ValueError(f"mask_decode: weight {tuple(weight.shape)} for score {tuple(score.shape)}")
    use_triton = impl == "triton" or (
        impl == "auto" and fused_available(score.device)
        and all(t.dtype == torch.float32 for t in (score, bias, x, weight)))
    if not use_triton:
        masked = sigmoid_mask(score, bias, x, impl="reference" if impl == "reference" else "auto", frames=frames,
                              link=link)
        return torch.matmul(weight.transpose(1, 2), masked)
    if score.shape != x.shape or score.dim() != 4 or tuple(bias.shape) != tuple(score.shape[1:3]):
        raise ValueError(f"mask_decode: score {tuple(score.shape)}, bias {tuple(bias.shape)}, x {tuple(x.shape)}")
    frames = signal_frames(frames, score)
    return _MaskDecode.apply(score.contiguous(), bias.contiguous(), x.contiguous(), weight.contiguous(),
                             score.shape[3] if frames is None else frames, GradLink.accepted(link))


__all__ = ["DECODE_BACKWARD_TILE", "DECODE_FORWARD_TILE", "mask_decode", "sigmoid_mask", "sigmoid_mask_reference"]
