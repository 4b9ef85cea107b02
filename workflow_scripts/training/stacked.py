"""Train several ConvTasNets of one size together, as one computation.

Fine-tuning one small ConvTasNet at batch 8 leaves a GPU mostly idle: each
step is a few hundred small kernels. Here K models of the same config become
one model: every weight gets a leading model axis, activations are laid out
(batch, model, channel, time), 1x1 convolutions are batched matrix products,
gLN is a group norm with one group per model and the depthwise convolutions
are one depthwise convolution over all models' channels. The skip paths of the
14 blocks are summed by one matrix product over their concatenated inputs,
and the decoder is a matrix product plus an overlap-add (kernel 16, stride 8),
which is the same function as the plain model's up to float rounding.

Each model keeps its own data, learning rate, gradient clipping, Adam state
and early stopping, so `train_stacked` gives each model what
`training.train` would give it alone: the same in law with on-device crops
(`DeviceCropMixer`), and the same numbers up to float rounding with the plain
trainer's own batches (`CropMixerBatches`). The weights, their gradients and
the Adam state live in (K, P) buffers, so clipping and Adam are a handful of
element-wise kernels for all models; a model that stops early is dropped from
the buffers and the others continue.

`enhance_many` enhances many mixtures of different lengths in a few padded
batches; padding is masked (gLN statistics and depthwise-convolution inputs
see only each signal's own frames), so each output equals the one-at-a-time
output up to float rounding.

On an H100 (bench/RESULTS.md, "Fine-tuning throughput"): K = 32 tiny or 16
small / medium models fit in 80 GB at batch 8 x 4 s; precision "tf32" is
10-14% faster than "fp32" with loss curves as close to a float64 reference as
the plain trainer's; "bf16" autocast is slower and less accurate; a CUDA
graph helps only for small K. `fused=True` runs the bottleneck gLN, each
block's bias + PReLU + gLN chains (the second with the depthwise conv inside),
the skip concatenation, and the mask's bias + sigmoid + product with the
decoder's matrix product, as hand-written Triton kernels
(workflow_scripts/model/fused_gln.py); a crop's rows of frames are padded to a
multiple of 8 (7999 -> 8000), so that cuBLAS runs the 1x1 convs' products
with aligned kernels (0.89 of the step), and the gradients of tensors with two
consumers are added in place. Together 0.46-0.55 of the eager step's time at
K = 16, and 31-42% less memory.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import warnings
from pathlib import Path
from signal import SIGTERM

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from workflow_scripts.model import fused_gln
from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.model.convtasnet import ConvTasNet, resolve_config
from workflow_scripts.model.enhance import length_chunks, padded_signals
from workflow_scripts.model.fused_gln import (
    GradLink,
    SkipGrad,
    concat_blocks,
    conv_prelu_gln,
    fused_available,
    gln,
    input_conv,
    mask_decode,
    prelu_gln,
    residual_conv,
    skip_buffer,
)
from workflow_scripts.scoring.metrics import NP_EPS, sdr_torch
from workflow_scripts.files.folders import DataError
from workflow_scripts.training.trainer import (
    GRAD_CLIP_NORM,
    MAX_DRAWS,
    PEAK,
    RESUME_FORMAT,
    CropMixer,
    Recipe,
    StopRequest,
    TrainResult,
    atomic_path,
    load_resume,
)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "bf16")
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as training.train uses
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s
# StackedStep writes the gradients into grad_flat in one copy (StackedConvTasNet.backward); False
# accumulates them through loss.backward() into its strided views, as before (for benches)
GRAD_INTO_FLAT = True
FRAME_ALIGN = 8  # StackedConvTasNet.frame_align of the fused path on a GPU
STACKED_RESUME_EVERY = 300  # steps between resume files (a few seconds of a stack's time)
STACKED_RESUME_KIND = "stacked"


# ---- K models as one ------------------------------------------------------------


class StackedConvTasNet:
    """K ConvTasNets of one config whose weights live in one (K, P) buffer.

    `params[name]` is a (K, *shape) view of row-slices of `flat` (shape as in
    ConvTasNet's state dict) and requires grad; its `.grad` is the matching view
    of `grad_flat`, into which backward accumulates in place.
    """

    def __init__(self, config: dict, num_models: int, device="cpu", dtype=torch.float32, pointwise="matmul",
                 fused: bool | str = False):
        if pointwise not in POINTWISE_CONVS:
            raise ValueError(f"unknown pointwise {pointwise!r}; expected one of {sorted(POINTWISE_CONVS)}")
        self.pointwise_conv = POINTWISE_CONVS[pointwise]
        # fused=True: the fused kernels (fused_gln) where Triton can run them (a GPU), else the eager ops, so
        # that the CPU's numbers do not change; "reference": the fused path's composition on any device,
        # with the kernels' reference ops where Triton cannot run (tests). The masked path is always eager.
        if fused not in (False, True, "reference"):
            raise ValueError(f"fused must be False, True or 'reference', got {fused!r}")
        self.fused = fused == "reference" or (fused is True and fused_available(device))
        # the fused path's rows of frames are padded to a multiple of this, so that the 1x1 convs' matrix
        # products run cuBLAS's aligned kernels (a 4 s crop has 7999 frames: unaligned); 1: no padding
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
    def from_models(cls, models: list[ConvTasNet], device="cpu", dtype=torch.float32, pointwise="matmul",
                    fused: bool | str = False):
        if not models:
            raise ValueError("need at least one model")
        configs = [resolve_config(m.config) for m in models]
        if any(c != configs[0] for c in configs):
            raise ValueError("all stacked models must have the same config")
        stack = cls(configs[0], len(models), device, dtype, pointwise, fused)
        for k, model in enumerate(models):
            stack.load_row(k, model.state_dict())
        return stack

    @property
    def num_models(self) -> int:
        return self.flat.shape[0]

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

    def keep(self, rows: list[int]) -> None:
        """Keep only the models in `rows` (in that order)."""
        index = torch.as_tensor(rows, device=self.device, dtype=torch.long)
        self.flat = self.flat.index_select(0, index)
        self.grad_flat = torch.zeros_like(self.flat)
        self._bind()

    def zero_grad(self) -> None:
        self.grad_flat.zero_()

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of `loss` into `grad_flat`, overwriting it, in one copy.

        (`loss.backward()` works too, accumulating into the (K, *shape) views of
        `grad_flat`; those views are strided, and the ~250 accumulations a step
        ran as slow strided kernels: 4.6 ms of a 62 ms medium K7 step.)
        """
        leaves = [self.params[name] for name in self.names]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        parts = [torch.zeros_like(leaf) if grad is None else grad for leaf, grad in zip(leaves, grads)]
        torch.cat([part.reshape(self.num_models, -1) for part in parts], dim=1, out=self.grad_flat)

    # -- forward --

    def forward(self, mixtures: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(K, batch, samples) -> (K, batch, samples), each model on its own row.

        `lengths` (K, batch) marks zero-padded signals: each output then equals
        the model's output on the unpadded signal, zero-padded.
        """
        p, cfg = self.params, self.config
        num_models, batch, num_samples = mixtures.shape
        if num_models != self.num_models:
            raise ValueError(f"{num_models} rows of input for {self.num_models} models")
        kernel, stride = cfg["L"], cfg["L"] // 2
        if num_samples < kernel:
            raise ValueError(f"input of {num_samples} samples is shorter than the {kernel}-sample kernel")
        wav = mixtures.to(self.dtype).transpose(0, 1)  # (batch, K, samples)
        fused = self.fused and lengths is None
        signal = (num_samples - kernel) // stride + 1  # frames of the signal
        padding = -signal % self.frame_align if fused else 0
        if padding:  # padding frames: zeros out of every fused op, left out of their statistics and gradients
            wav = F.pad(wav, (0, padding * stride))
        signal_frames = signal if padding else None
        frames = wav.unfold(-1, kernel, stride)  # (batch, K, frames, L)
        tf_rep = torch.matmul(p["encoder.filterbank._filters"][:, :, 0], frames.transpose(-1, -2))
        frame_mask = None
        if lengths is not None:
            num_frames = (lengths.to(self.device).transpose(0, 1) - kernel) // stride + 1  # (batch, K)
            positions = torch.arange(tf_rep.shape[-1], device=self.device)
            frame_mask = (positions < num_frames[..., None, None]).to(tf_rep.dtype)  # (batch, K, 1, frames)
            tf_rep = tf_rep * frame_mask
        masker = "masker."
        if fused:
            # the mask's backward hands tf_rep's gradient to the bottleneck gLN's, which adds into it
            tf_link = GradLink() if "encoder_grad" in fused_gln.STAGES else None
            out = gln(tf_rep, p[masker + "bottleneck.0.gamma"], p[masker + "bottleneck.0.beta"],
                      frames=signal_frames, link=tf_link)
        else:
            out = _global_layer_norm(
                tf_rep, p[masker + "bottleneck.0.gamma"], p[masker + "bottleneck.0.beta"], frame_mask
            )
        out = self.pointwise_conv(out, p[masker + "bottleneck.1.weight"], p[masker + "bottleneck.1.bias"])
        num_blocks = cfg["X"] * cfg["R"]
        shared_outputs = []
        skip_in = skip_buffer(out, num_blocks * cfg["H"]) if fused else None  # the blocks write into it
        skip_grad = None if skip_in is None else SkipGrad(skip_in)  # its gradient, for the residual convs
        for i in range(num_blocks):
            block = f"{masker}TCN.{i}."
            if fused:  # the bias adds (and the depthwise conv) go into the fused kernels
                stream_grad = GradLink() if i < num_blocks - 1 else None  # links the block's two 1x1 convs
                hidden = prelu_gln(
                    input_conv(out, p[block + "shared_block.0.weight"][..., 0], stream_grad),
                    p[block + "shared_block.0.bias"], p[block + "shared_block.1.weight"],
                    p[block + "shared_block.2.gamma"], p[block + "shared_block.2.beta"], frames=signal_frames,
                )
                hidden = conv_prelu_gln(  # the depthwise conv inside the kernels
                    hidden, p[block + "shared_block.3.weight"], 2 ** (i % cfg["X"]),
                    p[block + "shared_block.3.bias"], p[block + "shared_block.4.weight"],
                    p[block + "shared_block.5.gamma"], p[block + "shared_block.5.beta"],
                    out=None if skip_in is None else skip_in[:, :, i * cfg["H"]:(i + 1) * cfg["H"]],
                    frames=signal_frames,
                )
            else:
                hidden = self.pointwise_conv(
                    out, p[block + "shared_block.0.weight"], p[block + "shared_block.0.bias"]
                )
                hidden = _prelu(hidden, p[block + "shared_block.1.weight"])
                hidden = _global_layer_norm(
                    hidden, p[block + "shared_block.2.gamma"], p[block + "shared_block.2.beta"], frame_mask
                )
                if frame_mask is not None:
                    hidden = hidden * frame_mask  # the depthwise conv sees zeros past each signal's end
                hidden = _depthwise_conv(
                    hidden, p[block + "shared_block.3.weight"], p[block + "shared_block.3.bias"], 2 ** (i % cfg["X"])
                )
                hidden = _prelu(hidden, p[block + "shared_block.4.weight"])
                hidden = _global_layer_norm(
                    hidden, p[block + "shared_block.5.gamma"], p[block + "shared_block.5.beta"], frame_mask
                )
            shared_outputs.append(hidden)
            if i < num_blocks - 1 and fused:  # the last block's residual feeds nothing
                out = residual_conv(out, hidden, p[block + "res_conv.weight"][..., 0], p[block + "res_conv.bias"],
                                    skip_grad, stream_grad)
            elif i < num_blocks - 1:
                out = out + self.pointwise_conv(hidden, p[block + "res_conv.weight"], p[block + "res_conv.bias"])
        # sum of the blocks' skip convs = one conv over their concatenated inputs
        skip_weight = torch.cat([p[f"{masker}TCN.{i}.skip_conv.weight"] for i in range(num_blocks)], dim=2)
        skip_bias = torch.stack([p[f"{masker}TCN.{i}.skip_conv.bias"] for i in range(num_blocks)]).sum(0)
        skip_sum = self.pointwise_conv(concat_blocks(shared_outputs, skip_in, skip_grad), skip_weight, skip_bias)
        score = self.pointwise_conv(
            _prelu(skip_sum, p[masker + "mask_net.0.weight"]),
            p[masker + "mask_net.1.weight"],
            None if fused else p[masker + "mask_net.1.bias"],
        )
        # transposed conv (kernel 2*stride) = matrix product, then overlap-add of two halves
        if fused:  # bias + sigmoid + product, and the decoder's product, in one kernel
            decoded = mask_decode(score, p[masker + "mask_net.1.bias"], tf_rep,
                                  p["decoder.filterbank._filters"][:, :, 0], frames=signal_frames, link=tf_link)
        else:
            masked = torch.sigmoid(score) * tf_rep
            decoded = torch.matmul(p["decoder.filterbank._filters"][:, :, 0].transpose(1, 2), masked)
        halves = decoded.transpose(-1, -2)  # (batch, K, frames, L)
        wav_out = F.pad(halves[..., :stride], (0, 0, 0, 1)) + F.pad(halves[..., stride:], (0, 0, 1, 0))
        wav_out = wav_out.reshape(batch, num_models, -1)
        wav_out = F.pad(wav_out, (0, num_samples - wav_out.shape[-1]))
        return wav_out.transpose(0, 1)

    def losses(self, mixtures: torch.Tensor, cleans: torch.Tensor, autocast_dtype=None) -> torch.Tensor:
        """(K,) batch-mean negative SDR of each model (training.train's loss)."""
        with torch.autocast(self.device.type, dtype=autocast_dtype or torch.bfloat16,
                            enabled=autocast_dtype is not None):
            estimates = self.forward(mixtures)
        return -sdr_torch(estimates.to(self.dtype), cleans).mean(-1)


def _pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 conv per model: x (batch, K, C, T), weight (K, O, C, 1), bias (K, O) or None."""
    out = torch.matmul(weight[..., 0], x)
    return out if bias is None else out + bias[..., None]


def _pointwise_conv_grouped(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The same as a grouped (one group per model) cuDNN convolution."""
    batch, num_models, channels, frames = x.shape
    out = F.conv1d(x.reshape(batch, num_models * channels, frames), weight.reshape(-1, channels, 1),
                   None if bias is None else bias.reshape(-1), groups=num_models)
    return out.view(batch, num_models, -1, frames)


POINTWISE_CONVS = {"matmul": _pointwise_conv, "grouped_conv": _pointwise_conv_grouped}


def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU with one slope per model: x (batch, K, C, T), weight (K, 1)."""
    batch, num_models, channels, frames = x.shape
    slopes = weight.expand(num_models, channels).reshape(num_models * channels)
    return F.prelu(x.reshape(batch, num_models * channels, frames), slopes).view(x.shape)


def _global_layer_norm(x, gamma, beta, frame_mask=None):
    """gLN per (example, model) over (channel, time); gamma, beta (K, C)."""
    batch, num_models, channels, frames = x.shape
    if frame_mask is None:
        out = F.group_norm(
            x.reshape(batch, num_models * channels, frames),
            num_models,
            gamma.reshape(-1),
            beta.reshape(-1),
            1e-8,
        )
        return out.view(x.shape)
    count = frame_mask.sum(-1, keepdim=True) * channels  # (batch, K, 1, 1)
    mean = (x * frame_mask).sum((2, 3), keepdim=True) / count
    var = ((x - mean) * frame_mask).pow(2).sum((2, 3), keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + 1e-8) * gamma[None, :, :, None] + beta[None, :, :, None]


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


# ---- optimizer ------------------------------------------------------------------


def clip_grad_norm_rows_(grad_flat: torch.Tensor, max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ on each model's row of gradients; returns the (K,) norms."""
    norms = torch.linalg.vector_norm(grad_flat, dim=1)
    coef = (max_norm / (norms + CLIP_EPS)).clamp(max=1.0)
    grad_flat.mul_(coef[:, None].to(grad_flat.dtype))
    return norms


class StackedAdam:
    """torch.optim.Adam's update (defaults, no weight decay) on each row, with
    its own learning rate and step count; runs on the device without syncs."""

    def __init__(self, stack: StackedConvTasNet, lrs, betas=ADAM_BETAS, eps=ADAM_EPS):
        if len(lrs) != stack.num_models:
            raise ValueError(f"{len(lrs)} learning rates for {stack.num_models} models")
        self.stack = stack
        self.betas, self.eps = betas, eps
        self.lr = torch.as_tensor(lrs, dtype=torch.float64, device=stack.device)
        self.steps = torch.zeros(stack.num_models, dtype=torch.float64, device=stack.device)
        self.exp_avg = torch.zeros_like(stack.flat)
        self.exp_avg_sq = torch.zeros_like(stack.flat)

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        grad, param = self.stack.grad_flat, self.stack.flat
        self.steps += 1
        step_size = (self.lr / (1 - beta1**self.steps)).to(param.dtype)[:, None]
        bias_correction2_sqrt = (1 - beta2**self.steps).sqrt().to(param.dtype)[:, None]
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.sub_((self.exp_avg / denom).mul_(step_size))

    def keep(self, rows: list[int]) -> None:
        index = torch.as_tensor(rows, device=self.stack.device, dtype=torch.long)
        for name in ("lr", "steps", "exp_avg", "exp_avg_sq"):
            setattr(self, name, getattr(self, name).index_select(0, index))

    def state(self) -> dict:
        return {name: getattr(self, name).detach().cpu().clone() for name in ("steps", "exp_avg", "exp_avg_sq")}

    def load_state(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)


# ---- training batches ---------------------------------------------------------------


class CropMixerBatches:
    """The plain trainer's batches: one CropMixer and numpy stream per model,
    drawn exactly as training.train draws them (for checks against it)."""

    def __init__(self, mixers: list[CropMixer], recipes: list[Recipe], device="cpu"):
        self.mixers = list(mixers)
        self.recipes = list(recipes)
        self.rngs = [np.random.default_rng([recipe.seed, 0]) for recipe in recipes]
        self.device = torch.device(device)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [m.batch(rng, r.batch_size) for m, rng, r in zip(self.mixers, self.rngs, self.recipes)]
        mixtures = torch.from_numpy(np.stack([b[0] for b in batches])).to(self.device)
        cleans = torch.from_numpy(np.stack([b[1] for b in batches])).to(self.device)
        return mixtures, cleans

    def failed(self) -> torch.Tensor:
        return torch.zeros(len(self.mixers), dtype=torch.bool)

    def keep(self, rows: list[int]) -> None:
        self.mixers = [self.mixers[k] for k in rows]
        self.recipes = [self.recipes[k] for k in rows]
        self.rngs = [self.rngs[k] for k in rows]

    def state(self) -> dict:
        return {"rngs": [rng.bit_generator.state for rng in self.rngs]}

    def load_state(self, state: dict) -> None:
        for rng, saved in zip(self.rngs, state["rngs"], strict=True):
            rng.bit_generator.state = saved


def _pack(signals_per_model: list[list[np.ndarray]], device) -> dict:
    """Concatenate every model's signals into one device tensor, with per-model
    (start, length) tables and a running count of non-zero samples. A signal
    shared by several models (the same array object) is stored once."""
    width = max(len(signals) for signals in signals_per_model)
    starts = np.zeros((len(signals_per_model), width), np.int64)
    lengths = np.ones((len(signals_per_model), width), np.int64)
    placed: dict[int, int] = {}
    unique: list[np.ndarray] = []
    position = 0
    for k, signals in enumerate(signals_per_model):
        for i, signal in enumerate(signals):
            if id(signal) not in placed:
                placed[id(signal)] = position
                unique.append(signal)
                position += signal.size
            starts[k, i], lengths[k, i] = placed[id(signal)], signal.size
    flat = np.concatenate(unique).astype(np.float32)
    nonzero = np.concatenate([[0], np.cumsum(flat != 0, dtype=np.int64)])
    return {
        "audio": torch.from_numpy(flat).to(device),
        "nonzero": torch.from_numpy(nonzero).to(device),
        "starts": torch.from_numpy(starts).to(device),
        "lengths": torch.from_numpy(lengths).to(device),
        "count": torch.tensor([len(s) for s in signals_per_model], device=device),
    }


class DeviceCropMixer:
    """CropMixer for K models at once, on the device: the same law (a random
    crop of a random utterance, zero-padded if short; a random noise tiled from
    a random offset; SNR uniform in the model's range; redrawn while either
    crop is silent, at most MAX_DRAWS times), drawn from one torch generator.

    All MAX_DRAWS candidates are drawn at once and the first non-silent one is
    kept (the law of redrawing); silence is read off running counts of
    non-zero samples, so a step needs no host sync. A model whose draws all
    failed is flagged in `failed()`. Each model draws from a generator of its
    own, seeded by (`seed`, its recipe's seed), so its crops do not depend on
    which other models share the stack, nor on their order.
    """

    def __init__(self, speech: list[list[np.ndarray]], noises: list[list[np.ndarray]], recipes: list[Recipe],
                 device="cpu", seed: int = 0, sample_rate: int = SAMPLE_RATE):
        if not (len(speech) == len(noises) == len(recipes)) or not recipes:
            raise ValueError("need one speech list, noise list and recipe per model")
        for k, (utterances, noise_set) in enumerate(zip(speech, noises)):
            if not utterances or not noise_set:
                raise DataError(f"model {k}: need at least one training utterance and one noise")
        _check_same(recipes, ("batch_size", "crop_seconds"))
        self.device = torch.device(device)
        self.batch_size = recipes[0].batch_size
        self.crop_samples = round(recipes[0].crop_seconds * sample_rate)
        self.speech = _pack(speech, self.device)
        self.noises = _pack(noises, self.device)
        self.snr_low_db = torch.tensor([r.snr_low_db for r in recipes], dtype=torch.float64, device=self.device)
        self.snr_high_db = torch.tensor([r.snr_high_db for r in recipes], dtype=torch.float64, device=self.device)
        self.peak_normalize = torch.tensor([r.peak_normalize for r in recipes], device=self.device)
        self.generators = [
            torch.Generator(device=self.device).manual_seed(int(np.random.SeedSequence([seed, r.seed]).generate_state(1)[0]))
            for r in recipes
        ]
        self.draw_failed = torch.zeros(len(recipes), dtype=torch.bool, device=self.device)
        self._rows = torch.arange(len(recipes), device=self.device)
        self._row_ids = list(range(len(recipes)))  # the same on the host, so that drawing needs no sync

    def _uniforms(self, count: int) -> list[torch.Tensor]:
        """`count` (K, batch, MAX_DRAWS) uniform tensors, each model's rows from its own generator."""
        shape = (count, self.batch_size, MAX_DRAWS)
        draws = torch.stack([torch.rand(shape, generator=self.generators[k], device=self.device, dtype=torch.float64)
                             for k in self._row_ids])
        return list(draws.unbind(1))

    def _pick(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        rows = table[self._rows]  # (K, width)
        return rows.gather(1, index.reshape(len(self._rows), -1)).view(index.shape)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.crop_samples
        speech, noises = self.speech, self.noises
        u_utt, u_crop, u_noise, u_offset, u_snr = self._uniforms(5)
        n_utt = speech["count"][self._rows].view(-1, 1, 1)
        utt = torch.minimum((u_utt * n_utt).long(), n_utt - 1)
        utt_start, utt_len = self._pick(speech["starts"], utt), self._pick(speech["lengths"], utt)
        crop_start = (u_crop * (utt_len - n + 1).clamp(min=1)).long()
        n_noise = noises["count"][self._rows].view(-1, 1, 1)
        noise = torch.minimum((u_noise * n_noise).long(), n_noise - 1)
        noise_start, noise_len = self._pick(noises["starts"], noise), self._pick(noises["lengths"], noise)
        offset = (u_offset * noise_len).long()
        low, high = self.snr_low_db[self._rows].view(-1, 1, 1), self.snr_high_db[self._rows].view(-1, 1, 1)
        snr_db = low + u_snr * (high - low)

        # the first candidate whose speech and noise crops both have a non-zero sample
        clean_begin = utt_start + crop_start
        clean_nonzero = speech["nonzero"][utt_start + torch.minimum(crop_start + n, utt_len)] - speech["nonzero"][
            clean_begin
        ]
        noise_nonzero = _cyclic_nonzero(noises["nonzero"], noise_start, noise_len, offset, n)
        ok = (clean_nonzero > 0) & (noise_nonzero > 0)
        first = ok.int().argmax(-1, keepdim=True)  # (K, batch, 1)
        self.draw_failed[self._rows] |= (~ok.any(-1)).any(-1)
        utt_start, utt_len, crop_start = (t.gather(2, first)[..., 0] for t in (utt_start, utt_len, crop_start))
        noise_start, noise_len, offset = (t.gather(2, first)[..., 0] for t in (noise_start, noise_len, offset))
        snr_db = snr_db.gather(2, first)[..., 0]

        t = torch.arange(n, device=self.device)
        position = crop_start[..., None] + t  # (K, batch, n)
        inside = position < utt_len[..., None]
        index = torch.minimum(utt_start[..., None] + position, utt_start[..., None] + utt_len[..., None] - 1)
        clean = speech["audio"][index] * inside
        noise_crop = noises["audio"][noise_start[..., None] + (offset[..., None] + t) % noise_len[..., None]]
        clean_power = clean.double().pow(2).mean(-1)
        noise_power = noise_crop.double().pow(2).mean(-1)
        gain = torch.sqrt(clean_power / (noise_power * 10.0 ** (snr_db / 10.0)))
        mixture = clean + noise_crop * gain[..., None].float()
        peak = self.peak_normalize[self._rows].view(-1, 1, 1)
        peak_gain = PEAK / mixture.abs().amax(-1, keepdim=True).clamp(min=1e-8)
        peak_gain = torch.where(peak, peak_gain, torch.ones_like(peak_gain))
        return mixture * peak_gain, clean * peak_gain

    def failed(self) -> torch.Tensor:
        return self.draw_failed[self._rows].cpu()

    def keep(self, rows: list[int]) -> None:
        self._rows = self._rows[torch.as_tensor(rows, device=self.device, dtype=torch.long)]
        self._row_ids = [self._row_ids[row] for row in rows]

    def state(self) -> dict:
        return {"generators": [g.get_state() for g in self.generators], "draw_failed": self.draw_failed.cpu()}

    def load_state(self, state: dict) -> None:
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        self.draw_failed.copy_(state["draw_failed"])


def _cyclic_nonzero(nonzero, start, length, offset, n):
    """Non-zero samples in n samples of a signal tiled from `offset`."""
    total = nonzero[start + length] - nonzero[start]
    remainder = n % length
    end = offset + remainder
    wraps = end > length
    straight = nonzero[start + torch.minimum(end, length)] - nonzero[start + offset]
    wrapped = (nonzero[start + length] - nonzero[start + offset]) + (
        nonzero[start + (end - length).clamp(min=0)] - nonzero[start]
    )
    return (n // length) * total + torch.where(wraps, wrapped, straight)


def _check_same(recipes: list[Recipe], fields: tuple[str, ...]) -> None:
    for field in fields:
        values = {getattr(r, field) for r in recipes}
        if len(values) > 1:
            raise ValueError(f"stacked models must share {field}; got {sorted(values)}")


# ---- validation and batched enhancement -------------------------------------------------


def _sdr_db_rows(cleans, estimates, lengths) -> torch.Tensor:
    """metrics.sdr_db (float64, zero-mean over each signal's own samples) per entry."""
    valid = torch.arange(cleans.shape[-1], device=cleans.device) < lengths[..., None]
    count = lengths.clamp(min=1)[..., None].double()
    reference = cleans.double() * valid
    estimate = estimates.double() * valid
    reference = (reference - reference.sum(-1, keepdim=True) / count) * valid
    estimate = (estimate - estimate.sum(-1, keepdim=True) / count) * valid
    ratio = reference.pow(2).sum(-1) / ((reference - estimate).pow(2).sum(-1) + NP_EPS)
    return 10.0 * torch.log10(ratio + NP_EPS)


class StackedValidation:
    """Each model's fixed validation pairs (training.validation_set), padded
    on the device; mean validation SDR of every model in a few batches."""

    def __init__(self, val_sets: list[list[tuple[np.ndarray, np.ndarray]]], device="cpu",
                 max_batch_samples: int = 2**23):
        if any(len(pairs) == 0 for pairs in val_sets):
            raise ValueError("every model needs at least one validation pair")
        # longest first in every row, so that a chunk of positions has similar lengths
        ordered = [sorted(pairs, key=lambda pair: -pair[0].size) for pairs in val_sets]
        self.mixtures, self.lengths = padded_signals([[m for m, _ in pairs] for pairs in ordered], device)
        self.cleans, _ = padded_signals([[c for _, c in pairs] for pairs in ordered], device)
        self.max_batch_samples = max_batch_samples

    def keep(self, rows: list[int]) -> None:
        index = torch.as_tensor(rows, device=self.lengths.device, dtype=torch.long)
        self.mixtures, self.cleans, self.lengths = (
            t.index_select(0, index) for t in (self.mixtures, self.cleans, self.lengths)
        )

    @torch.no_grad()
    def mean_sdr_db(self, stack: StackedConvTasNet) -> np.ndarray:
        """(K,) mean validation SDR in dB, as training.mean_validation_sdr."""
        longest = self.lengths.max(0).values.tolist()
        scores = torch.zeros(self.lengths.shape, dtype=torch.float64, device=self.lengths.device)
        kernel = stack.config["L"]
        for begin, end in length_chunks(longest, stack.num_models, self.max_batch_samples):
            width = longest[begin]
            lengths = self.lengths[:, begin:end]
            estimates = stack.forward(self.mixtures[:, begin:end, :width], lengths.clamp(min=kernel))
            scores[:, begin:end] = _sdr_db_rows(self.cleans[:, begin:end, :width], estimates.float(), lengths)
        present = self.lengths > 0
        return ((scores * present).sum(1) / present.sum(1)).cpu().numpy()


# ---- the training loop ------------------------------------------------------------------


@contextlib.contextmanager
def precision_mode(precision: str):
    """fp32: no TF32 anywhere; tf32: TF32 matmuls and convs; bf16: tf32 plus
    bfloat16 autocast of the forward pass (yields the autocast dtype or None)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        yield torch.bfloat16 if precision == "bf16" else None
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class StackedStep:
    """One optimisation step of all stacked models: loss, backward, per-model
    clipping and Adam. With `cuda_graph`, the step is captured once (after
    three eager steps) and replayed; inputs are copied into static buffers.
    With `compile` (True or a torch.compile mode), the forward pass and loss
    go through torch.compile."""

    def __init__(self, stack, optimizer, autocast_dtype=None, cuda_graph=False, max_norm=GRAD_CLIP_NORM,
                 compile: bool | str = False):
        self.stack, self.optimizer = stack, optimizer
        self.autocast_dtype, self.max_norm = autocast_dtype, max_norm
        self.cuda_graph = cuda_graph and stack.device.type == "cuda"
        self.eager_steps = 0
        self.graph = None
        self.losses_fn = stack.losses
        if compile:
            # forward + loss (and, through AOTAutograd, its backward) as generated
            # kernels; a new K (a model stopped) compiles again, then K is dynamic
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            mode = None if compile is True else compile
            self.losses_fn = torch.compile(stack.losses, mode=mode)

    def _update(self, mixtures, cleans) -> torch.Tensor:
        losses = self.losses_fn(mixtures, cleans, self.autocast_dtype)
        if GRAD_INTO_FLAT:
            self.stack.backward(losses.sum())
        else:
            self.stack.zero_grad()
            with warnings.catch_warnings():
                # the (K, P) row-slice gradients are strided like their weights, on purpose
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
                losses.sum().backward()
        clip_grad_norm_rows_(self.stack.grad_flat, self.max_norm)
        self.optimizer.step()
        return losses.detach()

    def __call__(self, mixtures, cleans) -> torch.Tensor:
        if not self.cuda_graph:
            return self._update(mixtures, cleans)
        if self.graph is None and self.eager_steps < 3:
            self.eager_steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                losses = self._update(mixtures, cleans)
            torch.cuda.current_stream().wait_stream(side)
            return losses
        if self.graph is None:
            self.static_in = (mixtures.clone(), cleans.clone())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_losses = self._update(*self.static_in)
        else:
            self.static_in[0].copy_(mixtures)
            self.static_in[1].copy_(cleans)
        self.graph.replay()
        return self.static_losses.clone()

    def reset(self) -> None:
        """Forget the captured graph (after the stack's shapes changed)."""
        self.graph, self.eager_steps = None, 0


def train_stacked(models: list[ConvTasNet], batches, validation: StackedValidation, recipes: list[Recipe],
                  device="cpu", *, dtype=torch.float32, precision: str = "fp32", cuda_graph: bool = False,
                  compile: bool | str = False, step_losses: list | None = None, progress: bool = True,
                  resume_file: str | Path | None = None, fingerprint: str = "",
                  resume_every: int = STACKED_RESUME_EVERY, fused: bool = False) -> list:
    """training.train for K models at once.

    Returns, per model in order, its TrainResult, or the exception that ended
    it (FloatingPointError when its loss stopped being finite, DataError when
    its crops kept coming out silent) while the others went on. Each model is
    left in its final state, as training.train leaves it. `batches` is a
    DeviceCropMixer or CropMixerBatches for the same models; `step_losses`,
    if given, receives each model's per-step losses (numpy arrays).

    With `resume_file`, the whole state of the stack (weights, Adam, the
    early-stopping bookkeeping of every model, the models already finished,
    the crop sampler's random state) is written there every `resume_every`
    steps and on SIGTERM (after the step under way, then SystemExit), and a
    run given a file that holds a state of the same `fingerprint` (what the
    caller's data, models and recipe hash to) continues from it: on the CPU it
    ends exactly as an uninterrupted run. With `fused`, the step runs fused
    Triton kernels on a GPU (see StackedConvTasNet; float32 only, elsewhere the
    same eager ops).
    """
    if len(models) != len(recipes):
        raise ValueError(f"{len(models)} models but {len(recipes)} recipes")
    if resume_every < 1:
        raise ValueError(f"resume_every must be at least 1, got {resume_every}")
    _check_same(recipes, ("batch_size", "crop_seconds"))
    other_metrics = sorted({r.val_metric for r in recipes} - {"sdr"})
    if other_metrics:
        raise ValueError(f"train_stacked selects and stops by validation SDR only, not {', '.join(other_metrics)}")
    device = torch.device(device)
    stack = StackedConvTasNet.from_models(models, device, dtype, fused=fused)
    optimizer = StackedAdam(stack, [r.lr for r in recipes])
    resume_file = Path(resume_file) if resume_file is not None else None
    saved = load_stacked_resume(resume_file, fingerprint) if resume_file is not None else None

    with precision_mode(precision) as autocast_dtype, StopRequest() as stop:
        step_fn = StackedStep(stack, optimizer, autocast_dtype, cuda_graph, compile=compile)
        if saved is None:
            loop = StackedLoop.start(validation.mean_sdr_db(stack), stack.flat.clone(), device)
        else:
            loop = StackedLoop.restore(saved, models, stack, optimizer, batches, validation, device)
            log.info("resumed from %s at step %d (%d of %d models still training)", resume_file, loop.step,
                     len(loop.ids), len(models))
        max_steps = max(r.max_steps for r in recipes)
        steps = tqdm(range(loop.step + 1, max_steps + 1), desc="train", unit="step", mininterval=5.0,
                     initial=loop.step, total=max_steps, disable=not progress)
        for step in steps:
            loop.step = step
            mixtures, cleans = batches.draw()
            losses = step_fn(mixtures, cleans)
            loop.loss_sum += losses.double()
            loop.first_bad_step = torch.where((loop.first_bad_step == 0) & ~torch.isfinite(losses), step,
                                              loop.first_bad_step)
            if step_losses is not None:
                loop.logged_losses.append(torch.full((len(models),), math.nan, device=device).index_copy(
                    0, torch.as_tensor(loop.ids, device=device), losses.float()))
            for row in range(len(loop.ids)):
                loop.loss_count[row] += 1
            due = [row for row, k in enumerate(loop.ids)
                   if step % recipes[k].val_every == 0 or step == recipes[k].max_steps]
            if due:
                finished = loop.validate(due, validation.mean_sdr_db(stack), batches.failed().numpy(), recipes,
                                         models, stack)
                if finished:
                    rows = [row for row in range(len(loop.ids)) if row not in finished]
                    if not rows:
                        break
                    for part in (stack, optimizer, batches, validation, loop):
                        part.keep(rows)
                    step_fn.reset()
                    steps.set_postfix(models=len(loop.ids))
            if resume_file is not None and step < max_steps and (step % resume_every == 0 or stop.requested):
                save_stacked_resume(resume_file, fingerprint, loop, stack, optimizer, batches)
            if stop.requested and step < max_steps:
                log.warning("SIGTERM: stopped after step %d%s", step,
                            f"; run again to continue from {resume_file}" if resume_file else "")
                raise SystemExit(128 + SIGTERM)
        steps.close()
    if step_losses is not None:
        curves = (torch.stack(loop.logged_losses).cpu().numpy() if loop.logged_losses
                  else np.zeros((0, len(models))))
        step_losses[:] = [curves[:, k][~np.isnan(curves[:, k])] for k in range(len(models))]
    return loop.results


class StackedLoop:
    """train_stacked's bookkeeping: the models still training (`ids`: row ->
    model), each model's validation history, best score, best weights (rows of
    `best_flat`) and stale count, the running train loss since its last
    validation, the first step whose loss was not finite, and the results of
    the models that have finished."""

    def __init__(self, num_models: int, device) -> None:
        self.step = 0
        self.ids = list(range(num_models))
        self.results: list = [None] * num_models
        self.final_states: dict[int, dict] = {}  # model -> its weights when it finished
        self.histories: list[list[dict]] = [[] for _ in range(num_models)]
        self.best_val = [math.nan] * num_models
        self.best_step, self.stale = [0] * num_models, [0] * num_models
        self.loss_count = [0] * num_models
        self.loss_sum = torch.zeros(num_models, dtype=torch.float64, device=device)
        self.first_bad_step = torch.zeros(num_models, dtype=torch.long, device=device)
        self.best_flat: torch.Tensor | None = None
        self.logged_losses: list[torch.Tensor] = []

    @classmethod
    def start(cls, initial_val: np.ndarray, flat: torch.Tensor, device) -> StackedLoop:
        loop = cls(len(initial_val), device)
        loop.best_flat = flat
        loop.best_val = [float(v) for v in initial_val]
        loop.histories = [[{"step": 0, "train_loss": math.nan, "val_sdr_db": float(v), "best": True}]
                          for v in initial_val]
        return loop

    TENSORS = ("loss_sum", "first_bad_step", "best_flat")
    LISTS = ("step", "ids", "results", "final_states", "histories", "best_val", "best_step", "stale", "loss_count")

    def state(self) -> dict:
        state = {name: copy.deepcopy(getattr(self, name)) for name in self.LISTS}
        state.update({name: getattr(self, name).detach().cpu().clone() for name in self.TENSORS})
        state["logged_losses"] = [t.cpu() for t in self.logged_losses]
        return state

    @classmethod
    def restore(cls, saved: dict, models, stack, optimizer, batches, validation, device) -> StackedLoop:
        """The loop of a resume file, and every part brought to its state."""
        loop = cls(len(models), device)
        for name in cls.LISTS:
            setattr(loop, name, saved["loop"][name])
        for name in cls.TENSORS:
            setattr(loop, name, saved["loop"][name].to(device))
        loop.logged_losses = [t.to(device) for t in saved["loop"]["logged_losses"]]
        for part in (stack, optimizer, batches, validation):
            part.keep(loop.ids)
        with torch.no_grad():
            stack.flat.copy_(saved["flat"])
        optimizer.load_state(saved["optimizer"])
        batches.load_state(saved["batches"])
        for k, state_dict in loop.final_states.items():
            models[k].load_state_dict(state_dict)
        _set_random_states(saved["random"], device)
        return loop

    def validate(self, due: list[int], val: np.ndarray, draw_failed: np.ndarray, recipes, models, stack) -> list[int]:
        """Record the validation of the rows `due`; returns the rows that finished
        (stopped early, reached their last step, diverged or ran out of crops)."""
        window_loss = (self.loss_sum / torch.tensor(self.loss_count, device=self.loss_sum.device)).cpu().numpy()
        bad = self.first_bad_step.cpu().numpy()
        finished = []
        for row in due:
            k = self.ids[row]
            if bad[row]:
                self.results[k] = FloatingPointError(f"training diverged at step {int(bad[row])}: loss not finite")
                finished.append(row)
                continue
            if draw_failed[row]:
                self.results[k] = DataError(f"{MAX_DRAWS} draws in a row gave a silent speech or noise crop")
                finished.append(row)
                continue
            improved = val[row] > self.best_val[k]
            self.histories[k].append({"step": self.step, "train_loss": float(window_loss[row]),
                                      "val_sdr_db": float(val[row]), "best": bool(improved)})
            self.loss_sum[row], self.loss_count[row] = 0.0, 0
            if improved:
                self.best_val[k], self.best_step[k], self.stale[k] = float(val[row]), self.step, 0
                self.best_flat[row].copy_(stack.flat[row])
            else:
                self.stale[k] += 1
                if self.stale[k] >= recipes[k].patience:
                    log.info("model %d: early stop at step %d", k, self.step)
                    finished.append(row)
                    continue
            if self.step == recipes[k].max_steps:
                finished.append(row)
        for row in finished:
            k = self.ids[row]
            self.final_states[k] = stack.state_dict_of(row)
            models[k].load_state_dict(self.final_states[k])
            if self.results[k] is None:
                self.results[k] = TrainResult(self.histories[k], stack.state_dict_of(row, self.best_flat),
                                              self.best_step[k], self.best_val[k])
        return finished

    def keep(self, rows: list[int]) -> None:
        self.ids = [self.ids[row] for row in rows]
        index = torch.as_tensor(rows, device=self.loss_sum.device)
        self.best_flat, self.loss_sum, self.first_bad_step = (
            t.index_select(0, index) for t in (self.best_flat, self.loss_sum, self.first_bad_step)
        )
        self.loss_count = [self.loss_count[row] for row in rows]


# ---- resume files -----------------------------------------------------------------



def _random_states(device: torch.device) -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_random_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if device.type == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def save_stacked_resume(path: Path, fingerprint: str, loop: StackedLoop, stack, optimizer, batches) -> None:
    """The stack's whole state, written under a temporary name and renamed."""
    state = {
        "format": RESUME_FORMAT,
        "kind": STACKED_RESUME_KIND,
        "fingerprint": fingerprint,
        "loop": loop.state(),
        "flat": stack.flat.detach().cpu().clone(),
        "optimizer": optimizer.state(),
        "batches": batches.state(),
        "random": _random_states(stack.device),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    log.info("step %d: resume file %s written (%d models training)", loop.step, path, len(loop.ids))


def load_stacked_resume(path: Path, fingerprint: str) -> dict | None:
    """The saved state when `path` holds one of this very stack, else None (and why, logged)."""
    state = load_resume(path, fingerprint)
    if state is not None and state.get("kind") != STACKED_RESUME_KIND:
        log.warning("%s: a resume file of a single fine-tune, not of a stack; starting from step 0", path)
        return None
    return state


__all__ = [
    "CropMixerBatches",
    "DeviceCropMixer",
    "StackedAdam",
    "StackedConvTasNet",
    "StackedLoop",
    "StackedStep",
    "StackedValidation",
    "clip_grad_norm_rows_",
    "load_stacked_resume",
    "precision_mode",
    "save_stacked_resume",
    "train_stacked",
]
