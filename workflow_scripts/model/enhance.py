"""Enhancement of full-length mixtures by a trained model: one at a time, or many
of different lengths in zero-padded batches (padding masked, so each output is
what the model gives for that mixture alone)."""

from __future__ import annotations

import numpy as np
import torch

from workflow_scripts.model.convtasnet import ConvTasNet
from workflow_scripts.model.stacked import StackedConvTasNet


@torch.inference_mode()
def enhance(model: ConvTasNet, mixture: np.ndarray, device: torch.device,
            matmul_decoder: bool = False) -> np.ndarray:
    """Enhance one full-length mixture; `matmul_decoder`: ConvTasNet.forward's."""
    x = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32)).to(device)[None]
    return (model(x, matmul_decoder=True) if matmul_decoder else model(x))[0].float().cpu().numpy()


def padded_signals(signals_per_row: list[list[np.ndarray]], device, dtype=torch.float32):
    """(rows, n, max_len) zero-padded tensor and (rows, n) lengths; missing entries have length 0."""
    width = max(len(signals) for signals in signals_per_row)
    max_len = max(s.size for signals in signals_per_row for s in signals)
    out = np.zeros((len(signals_per_row), width, max_len), np.float32)
    lengths = np.zeros((len(signals_per_row), width), np.int64)
    for k, signals in enumerate(signals_per_row):
        for i, s in enumerate(signals):
            out[k, i, : s.size] = s
            lengths[k, i] = s.size
    return torch.from_numpy(out).to(device, dtype), torch.from_numpy(lengths).to(device)


def length_chunks(lengths_sorted: list[int], rows: int, max_batch_samples: int):
    """Split positions 0..n-1 (lengths descending) into runs whose padded size
    rows x run x longest stays within max_batch_samples (at least one each)."""
    begin = 0
    while begin < len(lengths_sorted):
        end = begin + 1
        while end < len(lengths_sorted) and rows * (end + 1 - begin) * lengths_sorted[begin] <= max_batch_samples:
            end += 1
        yield begin, end
        begin = end


@torch.inference_mode()
def enhance_many(model: ConvTasNet, mixtures: list[np.ndarray], device, max_batch_samples: int = 2**23):
    """Enhance mixtures of any lengths in padded batches (longest first);
    each output is what `enhance` gives for that mixture alone."""
    device = torch.device(device)
    kernel = model.config["L"]
    short = [i for i, m in enumerate(mixtures) if m.size < kernel]
    if short:
        raise ValueError(f"mixture {short[0]} is shorter than the {kernel}-sample kernel")
    stack = StackedConvTasNet.from_models([model], device)
    order = sorted(range(len(mixtures)), key=lambda i: -mixtures[i].size)
    sizes = [mixtures[i].size for i in order]
    outputs: list[np.ndarray | None] = [None] * len(mixtures)
    for begin, end in length_chunks(sizes, 1, max_batch_samples):
        batch_ids = order[begin:end]
        padded, lengths = padded_signals([[mixtures[i] for i in batch_ids]], device)
        enhanced = stack.forward(padded, lengths).float().cpu().numpy()[0]
        for row, i in enumerate(batch_ids):
            outputs[i] = enhanced[row, : mixtures[i].size]
    return outputs
