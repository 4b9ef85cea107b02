"""The skip buffer and the residual path of the stacked ConvTasNet's fused forward pass.

The blocks' outputs are written by the fused kernels (`fused_gln.conv_prelu_gln(out=...)`)
into channel slices of one (batch, K, blocks x H, T) buffer, the skip convs' input, instead of
concatenated afterwards (`skip_buffer`, `concat_blocks`). In backward, where a tensor has two
consumers whose backwards run in a known order, the second adds its gradient into the first's
in place (a batched matrix product with beta 1) instead of autograd adding two tensors: each
block's residual conv adds into the skip buffer's gradient (`SkipGrad`, `residual_conv`), and
each block's input conv into the gradient the residual conv passed on (`GradLink`,
`input_conv`).
"""

from __future__ import annotations

import torch

from workflow_scripts.model.fused_gln import GradLink, fused_available


def skip_buffer(like: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A (batch, K, channels, T) float32 buffer (like `like`, (batch, K, *, T))
    for the blocks' outputs, written in place by `conv_prelu_gln(out=...)`:
    the skip convs' input without a concatenation. None where the kernels do
    not run (`concat_blocks` then concatenates)."""
    if not (like.dtype == torch.float32 and fused_available(like.device)):
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

    Where `block` is a slice of `skip_grad`'s buffer, backward adds block's
    gradient through this conv into the buffer's gradient in place (one
    matrix product with beta 1), instead of returning it for autograd to add
    to the skip convs' part (2 passes over the block fewer). `stream_grad`:
    shared with the same block's `input_conv`."""
    return _ResidualConv.apply(out, block, weight, bias, skip_grad, stream_grad)


def input_conv(out, weight, stream_grad: GradLink | None = None):
    """A TCN block's input 1x1 conv (no bias) per model: weight (K, H, B) on
    the residual stream out (batch, K, B, T). Where `stream_grad` is the
    block's residual conv's, backward adds out's gradient through this conv
    into the gradient the residual conv passed on (one matrix product with
    beta 1) instead of autograd adding the two."""
    return _InputConv.apply(out, weight, stream_grad)


__all__ = ["SkipGrad", "concat_blocks", "input_conv", "residual_conv", "skip_buffer"]
