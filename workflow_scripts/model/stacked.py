"""K ConvTasNets of one config as one model: `StackedConvTasNet`.

Every weight gets a leading model axis, activations are laid out (batch,
model, channel, time), 1x1 convolutions are batched matrix products, gLN is
a group norm with one group per model and the depthwise convolutions are one
depthwise convolution over all models' channels. The skip paths of the
blocks are summed by one matrix product over their concatenated inputs, and
the decoder is a matrix product plus an overlap-add (kernel L, stride L/2),
which is the same function as the plain model's up to float rounding.

Two forward paths:
- eager: the ops above in PyTorch; with `lengths`, zero-padded signals are
  masked (gLN statistics and depthwise-convolution inputs see only each
  signal's own frames), so that each output equals the one-at-a-time output
  (`model.enhance.enhance_many`, validation of stacks);
- fused (`fused=True` on a GPU with Triton): the bottleneck gLN, each
  block's bias + PReLU + gLN chains (the second with the depthwise conv
  inside), the skip concatenation, and the mask's bias + sigmoid + product
  with the decoder's matrix product run as hand-written Triton kernels
  (`fused_gln`, `fused_skip`, `fused_mask`); a crop's rows of frames are
  padded to a multiple of FRAME_ALIGN (7999 -> 8000), so that cuBLAS runs the
  1x1 convs' products with aligned kernels, and the gradients of tensors with
  two consumers are added in place. Speed and memory: bench/RESULTS.md,
  "Fine-tuning throughput" and "Fused kernels".
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch.nn import functional as F

from workflow_scripts.model.convtasnet import ConvTasNet, resolve_config
from workflow_scripts.model.fused_gln import GradLink, conv_prelu_gln, fused_available, gln, prelu_gln
from workflow_scripts.model.fused_mask import mask_decode
from workflow_scripts.model.fused_skip import SkipGrad, concat_blocks, input_conv, residual_conv, skip_buffer
from workflow_scripts.scoring.metrics import sdr_torch

FRAME_ALIGN = 8  # rows of frames of the fused path on a GPU are padded to a multiple of this
MASKER = "masker."


class StackedConvTasNet:
    """K ConvTasNets of one config whose weights live in one (K, P) buffer.

    `params[name]` is a (K, *shape) view of row-slices of `flat` (shape as in
    ConvTasNet's state dict) and requires grad; its `.grad` is the matching view
    of `grad_flat`, which `backward` overwrites.

    fused: True runs the fused kernels where Triton can run them (a GPU), else
    the eager ops, so that the CPU's numbers do not change; "reference" runs
    the fused path's composition on any device, with the kernels' reference
    ops where Triton cannot run (tests). The masked path is always eager.
    """

    def __init__(self, config: dict, num_models: int, device="cpu", dtype=torch.float32, fused: bool | str = False):
        if fused not in (False, True, "reference"):
            raise ValueError(f"fused must be False, True or 'reference', got {fused!r}")
        self.fused = fused == "reference" or (fused is True and fused_available(device))
        # 1: no padding (the CPU, the reference composition, float64)
        self.frame_align = FRAME_ALIGN if fused is True and self.fused and dtype == torch.float32 else 1
        self.config = resolve_config(config)
        if self.config["L"] != 2 * (self.config["L"] // 2):
            raise ValueError(f"kernel L={self.config['L']} must be even (stride L/2)")
        template = ConvTasNet(self.config)
        self.names = [name for name, _ in template.named_parameters()]
        self.shapes = {name: tuple(p.shape) for name, p in template.named_parameters()}
        sizes = [math.prod(self.shapes[name]) for name in self.names]
        self.offsets = dict(zip(self.names, np.cumsum([0, *sizes[:-1]]).tolist()))
        self.num_params = int(sum(sizes))
        self.device = torch.device(device)
        self.dtype = dtype
        self.flat = torch.zeros(num_models, self.num_params, device=self.device, dtype=dtype)
        self.grad_flat = torch.zeros_like(self.flat)
        self._bind()

    @classmethod
    def from_models(cls, models: list[ConvTasNet], device="cpu", dtype=torch.float32, fused: bool | str = False):
        if not models:
            raise ValueError("need at least one model")
        configs = [resolve_config(m.config) for m in models]
        if any(c != configs[0] for c in configs):
            raise ValueError("all stacked models must have the same config")
        stack = cls(configs[0], len(models), device, dtype, fused)
        for k, model in enumerate(models):
            stack.load_row(k, model.state_dict())
        return stack

    @property
    def num_models(self) -> int:
        return self.flat.shape[0]

    # -- weights --

    def _view(self, buffer: torch.Tensor, name: str) -> torch.Tensor:
        start = self.offsets[name]
        shape = self.shapes[name]
        return buffer[:, start : start + math.prod(shape)].view(buffer.shape[0], *shape)

    def _bind(self) -> None:
        self.params = {}
        for name in self.names:
            leaf = self._view(self.flat, name).detach().requires_grad_()
            leaf.grad = self._view(self.grad_flat, name)
            self.params[name] = leaf

    @torch.no_grad()
    def load_row(self, k: int, state_dict: dict) -> None:
        missing = [name for name in self.names if name not in state_dict]
        if missing:
            raise KeyError(f"state dict lacks {missing[:3]}")
        for name in self.names:
            self._view(self.flat, name)[k].copy_(state_dict[name].reshape(self.shapes[name]))

    @torch.no_grad()
    def state_dict_of(self, k: int, flat: torch.Tensor | None = None) -> dict:
        """Model k's weights (from `flat`, default the current ones) as a
        ConvTasNet state dict of CPU tensors."""
        flat = self.flat if flat is None else flat
        return {name: self._view(flat, name)[k].detach().cpu().clone() for name in self.names}

    def rows(self, rows: list[int]) -> StackedConvTasNet:
        """A stack of the models in `rows` (in that order), with copies of their weights;
        this one is left as it is."""
        subset = copy.copy(self)
        subset.keep(rows)
        return subset

    def keep(self, rows: list[int]) -> None:
        """Keep only the models in `rows` (in that order)."""
        index = torch.as_tensor(rows, device=self.device, dtype=torch.long)
        self.flat = self.flat.index_select(0, index)
        self.grad_flat = torch.zeros_like(self.flat)
        self._bind()

    def zero_grad(self) -> None:
        self.grad_flat.zero_()

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of `loss` into `grad_flat`, overwriting it, in one copy
        (`loss.backward()` would accumulate into the strided (K, *shape) views of
        `grad_flat`, one slow strided kernel per weight)."""
        leaves = [self.params[name] for name in self.names]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        parts = [torch.zeros_like(leaf) if grad is None else grad for leaf, grad in zip(leaves, grads)]
        torch.cat([part.reshape(self.num_models, -1) for part in parts], dim=1, out=self.grad_flat)

    # -- forward --

    def losses(self, mixtures: torch.Tensor, cleans: torch.Tensor) -> torch.Tensor:
        """(K,) batch-mean negative SDR of each model (the plain trainer's loss)."""
        return -sdr_torch(self.forward(mixtures), cleans).mean(-1)

    def forward(self, mixtures: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(K, batch, samples) -> (K, batch, samples), each model on its own row.

        `lengths` (K, batch) marks zero-padded signals: each output then equals
        the model's output on the unpadded signal, zero-padded.
        """
        num_models, _, num_samples = mixtures.shape
        if num_models != self.num_models:
            raise ValueError(f"{num_models} rows of input for {self.num_models} models")
        if num_samples < self.config["L"]:
            raise ValueError(f"input of {num_samples} samples is shorter than the {self.config['L']}-sample kernel")
        wav = mixtures.to(self.dtype).transpose(0, 1)  # (batch, K, samples)
        if self.fused and lengths is None:
            out = self._forward_fused(wav)
        else:
            out = self._forward_eager(wav, lengths)
        # cut, or zero-padded, to the input's length
        return F.pad(out, (0, num_samples - out.shape[-1])).transpose(0, 1)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(batch, K, samples) -> the encoder output (batch, K, N, frames)."""
        kernel = self.config["L"]
        frames = wav.unfold(-1, kernel, kernel // 2)  # (batch, K, frames, L)
        return torch.matmul(self.params["encoder.filterbank._filters"][:, :, 0], frames.transpose(-1, -2))

    def _overlap_add(self, decoded: torch.Tensor) -> torch.Tensor:
        """The transposed conv's output from the decoder's matrix product (batch, K, L, frames):
        the overlap-add of each frame's two halves, (batch, K, (frames + 1) * L/2)."""
        stride = self.config["L"] // 2
        halves = decoded.transpose(-1, -2)  # (batch, K, frames, L)
        wav = F.pad(halves[..., :stride], (0, 0, 0, 1)) + F.pad(halves[..., stride:], (0, 0, 1, 0))
        return wav.reshape(*wav.shape[:2], -1)

    def _skip_conv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks' skip convs as one conv over their concatenated inputs: (weight, bias)."""
        p, blocks = self.params, range(self.config["X"] * self.config["R"])
        weight = torch.cat([p[f"{MASKER}TCN.{i}.skip_conv.weight"] for i in blocks], dim=2)
        bias = torch.stack([p[f"{MASKER}TCN.{i}.skip_conv.bias"] for i in blocks]).sum(0)
        return weight, bias

    def _forward_eager(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        p, cfg = self.params, self.config
        tf_rep = self._encode(wav)
        frame_mask = None
        if lengths is not None:
            kernel = cfg["L"]
            num_frames = (lengths.to(self.device).transpose(0, 1) - kernel) // (kernel // 2) + 1  # (batch, K)
            positions = torch.arange(tf_rep.shape[-1], device=self.device)
            frame_mask = (positions < num_frames[..., None, None]).to(tf_rep.dtype)  # (batch, K, 1, frames)
            tf_rep = tf_rep * frame_mask
        out = _global_layer_norm(tf_rep, p[MASKER + "bottleneck.0.gamma"], p[MASKER + "bottleneck.0.beta"], frame_mask)
        out = _pointwise_conv(out, p[MASKER + "bottleneck.1.weight"], p[MASKER + "bottleneck.1.bias"])
        num_blocks = cfg["X"] * cfg["R"]
        blocks = []
        for i in range(num_blocks):
            blocks.append(self._block_eager(i, out, frame_mask))
            if i < num_blocks - 1:  # the last block's residual feeds nothing
                block = f"{MASKER}TCN.{i}."
                out = out + _pointwise_conv(blocks[-1], p[block + "res_conv.weight"], p[block + "res_conv.bias"])
        skip_sum = _pointwise_conv(torch.cat(blocks, dim=2), *self._skip_conv())
        score = _pointwise_conv(_prelu(skip_sum, p[MASKER + "mask_net.0.weight"]), p[MASKER + "mask_net.1.weight"],
                                p[MASKER + "mask_net.1.bias"])
        decoder = p["decoder.filterbank._filters"][:, :, 0]
        return self._overlap_add(torch.matmul(decoder.transpose(1, 2), torch.sigmoid(score) * tf_rep))

    def _block_eager(self, i: int, out: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        """TCN block i's shared block on the residual stream `out`."""
        p, block = self.params, f"{MASKER}TCN.{i}.shared_block."
        hidden = _pointwise_conv(out, p[block + "0.weight"], p[block + "0.bias"])
        hidden = _global_layer_norm(_prelu(hidden, p[block + "1.weight"]), p[block + "2.gamma"], p[block + "2.beta"],
                                    frame_mask)
        if frame_mask is not None:
            hidden = hidden * frame_mask  # the depthwise conv sees zeros past each signal's end
        hidden = _depthwise_conv(hidden, p[block + "3.weight"], p[block + "3.bias"], 2 ** (i % self.config["X"]))
        return _global_layer_norm(_prelu(hidden, p[block + "4.weight"]), p[block + "5.gamma"], p[block + "5.beta"],
                                  frame_mask)

    def _forward_fused(self, wav: torch.Tensor) -> torch.Tensor:
        p, cfg = self.params, self.config
        kernel, stride = cfg["L"], cfg["L"] // 2
        signal = (wav.shape[-1] - kernel) // stride + 1  # frames of the signal
        padding = -signal % self.frame_align
        if padding:  # padding frames: zeros out of every fused op, left out of their statistics and gradients
            wav = F.pad(wav, (0, padding * stride))
        frames = signal if padding else None
        tf_rep = self._encode(wav)
        # the mask's backward hands tf_rep's gradient to the bottleneck gLN's, which adds into it
        tf_link = GradLink()
        out = gln(tf_rep, p[MASKER + "bottleneck.0.gamma"], p[MASKER + "bottleneck.0.beta"], frames=frames,
                  link=tf_link)
        out = _pointwise_conv(out, p[MASKER + "bottleneck.1.weight"], p[MASKER + "bottleneck.1.bias"])
        num_blocks, hidden = cfg["X"] * cfg["R"], cfg["H"]
        skip_in = skip_buffer(out, num_blocks * hidden)  # the blocks write into it
        skip_grad = None if skip_in is None else SkipGrad(skip_in)  # its gradient, for the residual convs
        blocks = []
        for i in range(num_blocks):
            last = i == num_blocks - 1
            stream_grad = None if last else GradLink()  # links the block's two 1x1 convs
            into = None if skip_in is None else skip_in[:, :, i * hidden : (i + 1) * hidden]
            blocks.append(self._block_fused(i, out, stream_grad, into, frames))
            if not last:  # the last block's residual feeds nothing
                block = f"{MASKER}TCN.{i}."
                out = residual_conv(out, blocks[-1], p[block + "res_conv.weight"][..., 0], p[block + "res_conv.bias"],
                                    skip_grad, stream_grad)
        skip_sum = _pointwise_conv(concat_blocks(blocks, skip_in, skip_grad), *self._skip_conv())
        score = _pointwise_conv(_prelu(skip_sum, p[MASKER + "mask_net.0.weight"]), p[MASKER + "mask_net.1.weight"], None)
        # bias + sigmoid + product, and the decoder's product, in one kernel
        decoded = mask_decode(score, p[MASKER + "mask_net.1.bias"], tf_rep, p["decoder.filterbank._filters"][:, :, 0],
                              frames=frames, link=tf_link)
        return self._overlap_add(decoded)

    def _block_fused(self, i: int, out: torch.Tensor, stream_grad: GradLink | None, into: torch.Tensor | None,
                     frames: int | None) -> torch.Tensor:
        """TCN block i's shared block, the bias adds and the depthwise conv inside the fused kernels;
        written into `into` (the block's slice of the skip buffer) where given."""
        p, block = self.params, f"{MASKER}TCN.{i}.shared_block."
        hidden = prelu_gln(input_conv(out, p[block + "0.weight"][..., 0], stream_grad), p[block + "0.bias"],
                           p[block + "1.weight"], p[block + "2.gamma"], p[block + "2.beta"], frames=frames)
        return conv_prelu_gln(hidden, p[block + "3.weight"], 2 ** (i % self.config["X"]), p[block + "3.bias"],
                              p[block + "4.weight"], p[block + "5.gamma"], p[block + "5.beta"], out=into,
                              frames=frames)


# ---- the eager ops ------------------------------------------------------------------------


def _pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 conv per model: x (batch, K, C, T), weight (K, O, C, 1), bias (K, O) or None."""
    out = torch.matmul(weight[..., 0], x)
    return out if bias is None else out + bias[..., None]


def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU with one slope per model: x (batch, K, C, T), weight (K, 1)."""
    batch, num_models, channels, frames = x.shape
    slopes = weight.expand(num_models, channels).reshape(num_models * channels)
    return F.prelu(x.reshape(batch, num_models * channels, frames), slopes).view(x.shape)


def _global_layer_norm(x, gamma, beta, frame_mask=None):
    """gLN per (example, model) over (channel, time); gamma, beta (K, C). The masked form
    (inference: validation, padded batches) works in place on its own temporaries."""
    batch, num_models, channels, frames = x.shape
    if frame_mask is None:
        out = F.group_norm(
            x.reshape(batch, num_models * channels, frames), num_models, gamma.reshape(-1), beta.reshape(-1), 1e-8
        )
        return out.view(x.shape)
    count = frame_mask.sum(-1, keepdim=True) * channels  # (batch, K, 1, 1)
    mean = (x * frame_mask).sum((2, 3), keepdim=True) / count
    centered = x - mean
    var = (centered * frame_mask).pow_(2).sum((2, 3), keepdim=True) / count
    return centered.mul_(torch.rsqrt(var + 1e-8)).mul_(gamma[None, :, :, None]).add_(beta[None, :, :, None])


def _depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """Dilated depthwise conv, "same" padding: weight (K, H, 1, P), bias (K, H)."""
    batch, num_models, channels, frames = x.shape
    kernel = weight.shape[-1]
    out = F.conv1d(
        x.reshape(batch, num_models * channels, frames),
        weight.reshape(num_models * channels, 1, kernel),
        None if bias is None else bias.reshape(-1),
        padding=(kernel - 1) * dilation // 2,
        dilation=dilation,
        groups=num_models * channels,
    )
    return out.view(x.shape)
