"""ConvTasNet for single-source speech enhancement, in asteroid's module layout.

The module names mirror asteroid (`encoder.filterbank._filters`,
`masker.bottleneck`, `masker.TCN.<i>.shared_block`, `res_conv`, `skip_conv`,
`masker.mask_net`, `decoder.filterbank._filters`) so that the GenDA
challenge's generalist checkpoints load with strict key matching, without
asteroid as a dependency.

Architecture (Luo & Mesgarani 2019, asteroid's `ConvTasNet` with a free
filterbank): a learned 1-D conv encoder (N filters of L samples, stride L/2),
a temporal convolutional network (R repeats of X dilated depthwise-separable
blocks with global layer norm) that predicts a sigmoid mask over the encoder
output, and a transposed-conv decoder. Like asteroid, the input waveform is
not normalised: the encoder is linear and the masker starts with a global
layer norm, so the whole model is scale-equivariant.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from workflow_scripts.files.checkpoints import REBUILD, TorchFileError, load_torch, save_torch

MODEL_NAME = "ConvTasNet"
# a checkpoint may be the workflow's (model.pt) or the user's (config generalist.checkpoint)
CHECKPOINT_REMEDY = f"if the workflow made it, {REBUILD}; if it is a file of your own, replace it"

# size -> (bn_chan B, hid_chan H)
MODEL_SIZES = {"tiny": (8, 32), "small": (16, 64), "medium": (32, 128), "large": (64, 256)}

# The challenge's model_config keys: N filters, L kernel (stride L // 2), B
# bottleneck channels, H hidden channels, Sc skip channels, P depthwise kernel,
# X blocks per repeat, R repeats.
BASE_CONFIG = {"N": 512, "L": 16, "B": 8, "H": 32, "Sc": 128, "P": 3, "X": 7, "R": 2, "causal": False}
CONFIG_KEYS = tuple(BASE_CONFIG)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the file named in the message."""


class GlobalLayerNorm(nn.Module):
    """gLN: normalise over channels and time together (asteroid's GlobLN)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, chan, time)
        # group norm with one group is gLN: (x - mean) / sqrt(var + eps) over
        # (chan, time), then a per-channel gain and bias; one fused kernel
        return F.group_norm(x, 1, self.gamma, self.beta, self.eps)


class Conv1DBlock(nn.Module):
    """1x1 conv -> PReLU -> gLN -> dilated depthwise conv -> PReLU -> gLN,
    then a residual and a skip 1x1 conv."""

    def __init__(self, in_chan: int, hid_chan: int, skip_chan: int, kernel_size: int, dilation: int):
        super().__init__()
        padding = (kernel_size - 1) * dilation // 2
        self.shared_block = nn.Sequential(
            nn.Conv1d(in_chan, hid_chan, 1),
            nn.PReLU(),
            GlobalLayerNorm(hid_chan),
            nn.Conv1d(hid_chan, hid_chan, kernel_size, padding=padding, dilation=dilation, groups=hid_chan),
            nn.PReLU(),
            GlobalLayerNorm(hid_chan),
        )
        self.res_conv = nn.Conv1d(hid_chan, in_chan, 1)
        self.skip_conv = nn.Conv1d(hid_chan, skip_chan, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shared = self.shared_block(x)
        return self.res_conv(shared), self.skip_conv(shared)


class TDConvNet(nn.Module):
    """The mask estimator (asteroid's TDConvNet, non-causal, with skip paths)."""

    def __init__(
        self,
        in_chan: int,
        n_src: int,
        n_blocks: int,
        n_repeats: int,
        bn_chan: int,
        hid_chan: int,
        skip_chan: int,
        conv_kernel_size: int,
    ):
        super().__init__()
        self.in_chan = in_chan
        self.n_src = n_src
        self.bottleneck = nn.Sequential(GlobalLayerNorm(in_chan), nn.Conv1d(in_chan, bn_chan, 1))
        self.TCN = nn.ModuleList(
            Conv1DBlock(bn_chan, hid_chan, skip_chan, conv_kernel_size, dilation=2**x)
            for _ in range(n_repeats)
            for x in range(n_blocks)
        )
        self.mask_net = nn.Sequential(nn.PReLU(), nn.Conv1d(skip_chan, n_src * in_chan, 1))

    def forward(self, tf_rep: torch.Tensor) -> torch.Tensor:  # (batch, N, frames)
        batch, _, n_frames = tf_rep.shape
        output = self.bottleneck(tf_rep)
        skip_sum = 0.0
        for block in self.TCN:
            residual, skip = block(output)
            output = output + residual
            skip_sum = skip_sum + skip
        score = self.mask_net(skip_sum)
        return torch.sigmoid(score.view(batch, self.n_src, self.in_chan, n_frames))


class FreeFilterbank(nn.Module):
    """Learned filters of shape (n_filters, 1, kernel_size)."""

    def __init__(self, n_filters: int, kernel_size: int, stride: int):
        super().__init__()
        self.stride = stride
        self._filters = nn.Parameter(torch.empty(n_filters, 1, kernel_size))
        nn.init.xavier_normal_(self._filters)


class Encoder(nn.Module):
    def __init__(self, filterbank: FreeFilterbank):
        super().__init__()
        self.filterbank = filterbank

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (batch, 1, time)
        return F.conv1d(wav, self.filterbank._filters, stride=self.filterbank.stride)


class Decoder(nn.Module):
    def __init__(self, filterbank: FreeFilterbank):
        super().__init__()
        self.filterbank = filterbank

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # (batch, N, frames)
        return F.conv_transpose1d(spec, self.filterbank._filters, stride=self.filterbank.stride)

    def by_matmul(self, spec: torch.Tensor) -> torch.Tensor:
        """`forward` as a matrix product and the overlap-add of each frame's two halves (kernel L,
        stride L/2): the same function up to float rounding, and on the CPU much faster than
        the transposed conv."""
        filters, stride = self.filterbank._filters[:, 0], self.filterbank.stride
        if filters.shape[1] != 2 * stride:
            return self.forward(spec)
        halves = torch.matmul(filters.t(), spec).transpose(-1, -2)  # (batch, frames, L)
        wav = F.pad(halves[..., :stride], (0, 0, 0, 1)) + F.pad(halves[..., stride:], (0, 0, 1, 0))
        return wav.reshape(spec.shape[0], 1, -1)


class ConvTasNet(nn.Module):
    """Single-source ConvTasNet: (batch, time) -> (batch, time)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        if self.config.get("causal"):
            raise ValueError("causal ConvTasNet is not supported")
        n_filters, kernel_size = config["N"], config["L"]
        stride = kernel_size // 2
        self.encoder = Encoder(FreeFilterbank(n_filters, kernel_size, stride))
        self.masker = TDConvNet(
            n_filters,
            n_src=1,
            n_blocks=config["X"],
            n_repeats=config["R"],
            bn_chan=config["B"],
            hid_chan=config["H"],
            skip_chan=config["Sc"],
            conv_kernel_size=config["P"],
        )
        self.decoder = Decoder(FreeFilterbank(n_filters, kernel_size, stride))

    def forward(self, wav: torch.Tensor, matmul_decoder: bool = False) -> torch.Tensor:
        """(batch, time) -> (batch, time); a 1-D (time,) input gives a 1-D output. With
        `matmul_decoder`, the decoder runs as a matrix product (Decoder.by_matmul)."""
        if wav.dim() == 1:
            return self.forward(wav[None], matmul_decoder)[0]
        if wav.dim() != 2:
            raise ValueError(f"expected (batch, time) input, got shape {tuple(wav.shape)}")
        num_samples = wav.shape[-1]
        if num_samples < self.config["L"]:
            raise ValueError(
                f"input of {num_samples} samples is shorter than the {self.config['L']}-sample kernel"
            )
        tf_rep = self.encoder(wav.unsqueeze(1))
        masks = self.masker(tf_rep)  # (batch, 1, N, frames)
        masked = masks[:, 0] * tf_rep
        # (batch, 1, time')
        decoded = self.decoder.by_matmul(masked) if matmul_decoder else self.decoder(masked)
        # like asteroid's pad_x_to_y: the decoder's output is at most as long
        # as the input; pad the tail with zeros (or crop) to the input length
        decoded = F.pad(decoded, (0, num_samples - decoded.shape[-1]))
        return decoded[:, 0]


def resolve_config(size_or_config: str | dict) -> dict:
    """Model config from a size name or a config dict.

    Accepts the challenge's two layouts: a flat {"N", "L", "B", ...} dict,
    or a training config holding it under "model_config".
    """
    if isinstance(size_or_config, str):
        if size_or_config not in MODEL_SIZES:
            raise ValueError(f"unknown model size {size_or_config!r}; expected one of {sorted(MODEL_SIZES)}")
        bn_chan, hid_chan = MODEL_SIZES[size_or_config]
        return {**BASE_CONFIG, "B": bn_chan, "H": hid_chan}
    config = size_or_config
    if isinstance(config.get("model_config"), dict):
        config = config["model_config"]
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"model config lacks keys {missing}: {config}")
    return {key: config[key] for key in CONFIG_KEYS}


def size_name(config: dict) -> str | None:
    """The MODEL_SIZES name of a config, or None if it is not one of them."""
    config = resolve_config(config)
    for name in MODEL_SIZES:
        if resolve_config(name) == config:
            return name
    return None


def build_model(size_or_config: str | dict) -> ConvTasNet:
    return ConvTasNet(resolve_config(size_or_config))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[ConvTasNet, dict]:
    """Load a checkpoint (ours or the challenge's) with strict key matching.

    Returns (model in eval mode, the checkpoint dict). A file that is missing, unreadable
    (truncated or corrupt) or not a ConvTasNet checkpoint raises CheckpointError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = load_torch(path, "checkpoint", CHECKPOINT_REMEDY, map_location)
    except TorchFileError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a model checkpoint (no 'model_state_dict')")
    name = str(checkpoint.get("model_name", MODEL_NAME))
    if name.lower() != MODEL_NAME.lower():
        raise CheckpointError(f"{path}: model_name is {name!r}, expected {MODEL_NAME!r}")
    try:
        model = build_model(checkpoint.get("model_config", {}))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state dict does not match the model config: {exc}") from exc
    model.eval()
    return model, checkpoint


def save_checkpoint(path: str | os.PathLike, model: ConvTasNet, extra: dict | None = None) -> None:
    """Save in the challenge's layout, atomically (temporary name, then rename)."""
    path = Path(path)
    checkpoint = {
        "model_name": MODEL_NAME,
        "model_config": dict(model.config),
        "model_state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    save_torch(checkpoint, path)
