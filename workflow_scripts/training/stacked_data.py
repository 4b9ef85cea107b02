"""Training batches and validation sets of K stacked models, on the device.

`DeviceCropMixer` draws every model's crops on the device with the plain
CropMixer's law; `CropMixerBatches` draws them exactly as the plain trainer
does (one CropMixer per model, on the CPU), for checks against it.
`StackedValidation` holds every model's fixed validation pairs, padded, and
scores all models in a few batches.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.files.folders import DataError
from workflow_scripts.model.enhance import length_chunks, padded_signals
from workflow_scripts.model.stacked import StackedConvTasNet
from workflow_scripts.scoring.metrics import NP_EPS
from workflow_scripts.training.data import MAX_DRAWS, PEAK, CropMixer
from workflow_scripts.training.recipe import Recipe, check_shared


class CropMixerBatches:
    """The plain trainer's batches: one CropMixer and numpy stream per model,
    drawn exactly as training.loop.train draws them (for checks against it)."""

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
        check_shared(recipes, ("batch_size", "crop_seconds"))
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


# ---- validation ----------------------------------------------------------------------------


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


def _distinct_rows(flat: torch.Tensor, data: tuple[torch.Tensor, ...]) -> tuple[list[int], list[int]]:
    """The rows of `flat` that no earlier row equals in weights and in every tensor of `data`
    (row-indexed), and for each row the position among them of the one it equals."""
    rows, firsts = [], []
    for k in range(flat.shape[0]):
        same = next((i for i, row in enumerate(rows) if torch.equal(flat[k], flat[row])
                     and all(torch.equal(t[k], t[row]) for t in data)), None)
        if same is None:
            same = len(rows)
            rows.append(k)
        firsts.append(same)
    return rows, firsts


class StackedValidation:
    """Each model's fixed validation pairs (training.data.validation_set), padded
    on the device; mean validation SDR of every model in a few batches."""

    def __init__(self, val_sets: list[list[tuple[np.ndarray, np.ndarray]]], device="cpu",
                 max_batch_samples: int = 2**23, positions_per_pass: int | None = None):
        """`positions_per_pass`: the positions of a chunk that go through the models together
        (default: one on the CPU, the whole chunk elsewhere). Each pass is at the chunk's
        width, so that the scores do not depend on it; fewer take less memory."""
        if any(len(pairs) == 0 for pairs in val_sets):
            raise ValueError("every model needs at least one validation pair")
        # longest first in every row, so that a chunk of positions has similar lengths
        ordered = [sorted(pairs, key=lambda pair: -pair[0].size) for pairs in val_sets]
        self.mixtures, self.lengths = padded_signals([[m for m, _ in pairs] for pairs in ordered], device)
        self.cleans, _ = padded_signals([[c for _, c in pairs] for pairs in ordered], device)
        self.max_batch_samples = max_batch_samples
        if positions_per_pass is None:
            positions_per_pass = 1 if self.lengths.device.type == "cpu" else self.lengths.shape[1]
        self.positions_per_pass = positions_per_pass

    def keep(self, rows: list[int]) -> None:
        index = torch.as_tensor(rows, device=self.lengths.device, dtype=torch.long)
        self.mixtures, self.cleans, self.lengths = (
            t.index_select(0, index) for t in (self.mixtures, self.cleans, self.lengths)
        )

    @torch.no_grad()
    def mean_sdr_db(self, stack: StackedConvTasNet) -> np.ndarray:
        """(K,) mean validation SDR in dB, as training.loop.mean_validation_sdr.

        Models with the same weights and the same validation pairs (every model of a stack
        of one generalist, before the first step, where members share their validation
        utterances) are scored once, with the numbers of the whole stack."""
        rows, firsts = _distinct_rows(stack.flat, (self.mixtures, self.cleans, self.lengths))
        if len(rows) < stack.num_models:
            scores = self._subset(rows)._scores(stack.rows(rows), stack.num_models)[firsts]
        else:
            scores = self._scores(stack, stack.num_models)
        present = self.lengths > 0
        return ((scores * present).sum(1) / present.sum(1)).cpu().numpy()

    def _scores(self, stack: StackedConvTasNet, chunk_rows: int) -> torch.Tensor:
        """(K, positions) SDR in dB of every validation pair, in chunks of positions as for
        `chunk_rows` models."""
        longest = self.lengths.max(0).values.tolist()
        scores = torch.zeros(self.lengths.shape, dtype=torch.float64, device=self.lengths.device)
        kernel = stack.config["L"]
        for begin, end in length_chunks(longest, chunk_rows, self.max_batch_samples):
            width = longest[begin]
            for first in range(begin, end, self.positions_per_pass):
                last = min(first + self.positions_per_pass, end)
                lengths = self.lengths[:, first:last]
                estimates = stack.forward(self.mixtures[:, first:last, :width], lengths.clamp(min=kernel))
                cleans = self.cleans[:, first:last, :width]
                scores[:, first:last] = _sdr_db_rows(cleans, estimates.float(), lengths)
        return scores

    def _subset(self, rows: list[int]) -> StackedValidation:
        """The validation of the models in `rows` (a copy; this one is left as it is)."""
        subset = copy.copy(self)
        subset.keep(rows)
        return subset
