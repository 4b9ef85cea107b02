"""The training loop of one model: Adam on negative SDR, early stopping on the validation score.

Validation scores the fixed validation mixtures by mean SDR (the challenge's
metric) or by mean SI-SDR improvement over the mixture (`val_metric:
si_sdri`). The loop keeps the best state; the validation score of the
initial model is the first history row (step 0), so the best state can be
the initial one. With a resume file it continues a killed run exactly (see
`training.resume`).

Data-parallel (a `ProcessGroup` of several processes, runtime/distributed.py):
every process draws the same batches and trains on its share of each
(DistributedDataParallel averages the gradients), so a run of any number of
processes follows the one-process run up to float rounding; rank 0 validates,
decides on early stopping and tells the others, and writes the resume file.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import torch
from tqdm import tqdm

from workflow_scripts.model.convtasnet import ConvTasNet
from workflow_scripts.model.enhance import enhance
from workflow_scripts.runtime.distributed import SINGLE, ProcessGroup
from workflow_scripts.scoring.metrics import neg_sdr_loss, sdr_db, si_sdr_db
from workflow_scripts.training.data import BatchShare, CropMixer
from workflow_scripts.training.recipe import GRAD_CLIP_NORM, RESUME_EVERY, VAL_METRICS, Recipe
from workflow_scripts.training.resume import ResumeFile, RunFingerprint, restore_random_states, run_fingerprint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _mean_score(model: ConvTasNet, val_pairs, device, score) -> float:
    """Mean of score(i, clean, enhanced) over the pairs, the model in eval mode (then left as it was)."""
    was_training = model.training
    model.eval()
    scores = [score(i, clean, enhance(model, mixture, device)) for i, (mixture, clean) in enumerate(val_pairs)]
    model.train(was_training)
    return float(np.mean(scores))


def mean_validation_sdr(model: ConvTasNet, val_pairs, device: torch.device) -> float:
    return _mean_score(model, val_pairs, device, lambda i, clean, enhanced: sdr_db(clean, enhanced))


def mean_validation_si_sdri(
    model: ConvTasNet, val_pairs, device: torch.device, mixture_si_sdrs_db=None
) -> float:
    """Mean over the pairs of SI-SDR of the enhanced mixture minus SI-SDR of the mixture
    (`mixture_si_sdrs_db`: the latter, when already known)."""
    if mixture_si_sdrs_db is None:
        mixture_si_sdrs_db = [si_sdr_db(clean, mixture) for mixture, clean in val_pairs]
    if len(mixture_si_sdrs_db) != len(val_pairs):
        raise ValueError(f"{len(mixture_si_sdrs_db)} mixture SI-SDRs for {len(val_pairs)} validation pairs")
    return _mean_score(
        model, val_pairs, device, lambda i, clean, enhanced: si_sdr_db(clean, enhanced) - mixture_si_sdrs_db[i]
    )


def validation_scorer(val_pairs, val_metric: str, device: torch.device):
    """model -> its mean validation score of `val_metric` (a key of VAL_METRICS)."""
    if val_metric == "sdr":
        return lambda model: mean_validation_sdr(model, val_pairs, device)
    if val_metric == "si_sdri":
        mixture_si_sdrs_db = [si_sdr_db(clean, mixture) for mixture, clean in val_pairs]
        return lambda model: mean_validation_si_sdri(model, val_pairs, device, mixture_si_sdrs_db)
    raise ValueError(f"unknown validation metric {val_metric!r} (one of {', '.join(VAL_METRICS)})")


@dataclass
class TrainResult:
    history: list[dict]
    best_state: dict
    best_step: int
    best_val_db: float  # the best validation score, of `val_metric`
    val_metric: str = "sdr"

    @property
    def val_column(self) -> str:
        """The history's column of validation scores (val_sdr_db, val_si_sdri_db)."""
        return VAL_METRICS[self.val_metric][0]

    @property
    def best_val_sdr_db(self) -> float:
        if self.val_metric != "sdr":
            raise AttributeError(f"validated on {self.val_metric}, not SDR: see best_val_db")
        return self.best_val_db


@dataclass
class LoopState:
    """Where the training loop stands after `step` steps."""

    step: int
    history: list[dict]
    best_val: float
    best_state: dict  # on the CPU
    best_step: int = 0
    stale: int = 0  # evaluations without improvement
    losses: list[float] = field(default_factory=list)  # since the last evaluation


def cpu_state(model: torch.nn.Module) -> dict:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


class BatchStream:
    """The mixer's training batches in order, and the crop sampler's state
    after the last batch handed out (what a resume file keeps). With
    `prefetch`, the next batch is drawn in a background thread while the
    current step runs: the same batches, sooner. With a `share`, this
    process's share of each batch."""

    def __init__(self, mixer: CropMixer, rng: np.random.Generator, batch_size: int, prefetch: bool = False,
                 share: BatchShare | None = None):
        self.mixer, self.rng, self.batch_size, self.share = mixer, rng, batch_size, share
        self.state = rng.bit_generator.state
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="batches") if prefetch else None
        self._next = self._thread.submit(self._draw) if prefetch else None

    def _draw(self):
        mixtures, cleans, _ = self.mixer.batch(self.rng, self.batch_size, self.share)
        return mixtures, cleans, self.rng.bit_generator.state

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._thread is None:
            mixtures, cleans, self.state = self._draw()
        else:
            mixtures, cleans, self.state = self._next.result()
            self._next = self._thread.submit(self._draw)
        return mixtures, cleans

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._next.cancel()
            self._thread.shutdown(wait=True)


def training_fingerprint(model: ConvTasNet, mixer: CropMixer, val_pairs, recipe: Recipe) -> RunFingerprint:
    """run_fingerprint of recipe, initial model, training and validation audio."""
    validation = [a for pair in val_pairs for a in pair]
    return run_fingerprint(asdict(recipe), model, (mixer.utterances, mixer.noises, validation))


def train(
    model: ConvTasNet,
    mixer: CropMixer,
    val_pairs,
    recipe: Recipe,
    device: torch.device,
    resume_file: str | Path | None = None,
    resume_every: int = RESUME_EVERY,
    prefetch: bool = False,
    group: ProcessGroup = SINGLE,
) -> TrainResult:
    """Adam on negative SDR with early stopping on the mean validation score
    (`recipe.val_metric`).

    With `resume_file`, continues from it when it holds a state of this run,
    and writes one every `resume_every` steps and on SIGTERM (see
    `training.resume`; SIGTERM stops the run either way). With `prefetch`,
    each batch is drawn while the step before it runs (see BatchStream).
    With a `group` of several processes, this process's part of a
    data-parallel run: `recipe.batch_size` is the batch of all of them, and
    only rank 0 needs `val_pairs` and returns the history and best state.
    """
    device = torch.device(device)
    main = group.is_main
    seed_everything(recipe.seed)
    rng = np.random.default_rng([recipe.seed, 0])
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    column, label = VAL_METRICS[recipe.val_metric]
    validate = validation_scorer(val_pairs, recipe.val_metric, device)

    kept_file = resume_file if main else None  # rank 0 reads and writes it
    fingerprint = training_fingerprint(model, mixer, val_pairs, recipe) if kept_file is not None else None
    resume = ResumeFile(kept_file, "single", fingerprint, resume_every, device)
    saved = group.rank0_object(resume.load())
    if saved is not None:
        if not main:
            restore_random_states(saved["random"], device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["crop_sampler"]
        loop = LoopState(**saved["loop"])
        if main:
            log.info("resumed from %s at step %d", resume_file, loop.step)
    elif main:
        val = validate(model)
        history = [{"step": 0, "train_loss": math.nan, column: val, "best": True}]
        loop = LoopState(step=0, history=history, best_val=val, best_state=cpu_state(model))
        log.info("step 0: %s %.3f dB (initial model)", label, val)
    else:
        loop = LoopState(step=0, history=[], best_val=-math.inf, best_state={})
    trained = group.wrap(model)
    share = None if group.world_size == 1 else BatchShare(group.rank, group.world_size, group.sum_over_processes)

    def state() -> dict:
        return {"loop": asdict(loop), "model": cpu_state(model), "optimizer": optimizer.state_dict(),
                "crop_sampler": batches.state}

    progress = tqdm(
        range(loop.step + 1, recipe.max_steps + 1),
        desc="train",
        unit="step",
        mininterval=5.0,
        initial=loop.step,
        total=recipe.max_steps,
        disable=not main,
    )
    with resume, BatchStream(mixer, rng, recipe.batch_size, prefetch, share) as batches:
        for step in progress:
            mixtures, cleans = batches.next()
            estimate = trained(torch.from_numpy(mixtures).to(device))
            loss = neg_sdr_loss(estimate, torch.from_numpy(cleans).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            loop.step = step
            loss_db, stop_requested = group.mean_and_any(loss, resume.stop_requested)
            loop.losses.append(loss_db)
            if not math.isfinite(loop.losses[-1]):
                raise FloatingPointError(f"training diverged at step {step}: loss {loop.losses[-1]}")
            evaluation_step = step % recipe.val_every == 0 or step == recipe.max_steps
            if evaluation_step and group.rank0_flag(
                main and evaluate_and_check_stop(model, validate, loop, recipe, progress)
            ):
                break
            resume.end_of_step(step, recipe.max_steps, state, stop_requested)
    progress.close()
    return TrainResult(loop.history, loop.best_state, loop.best_step, loop.best_val, recipe.val_metric)


def evaluate_and_check_stop(model, validate, loop: LoopState, recipe: Recipe, progress) -> bool:
    """Validate, record the history row, keep the best state; True when it is time to stop early."""
    column, label = VAL_METRICS[recipe.val_metric]
    val = validate(model)
    improved = val > loop.best_val
    row = {"step": loop.step, "train_loss": float(np.mean(loop.losses)), column: val, "best": improved}
    loop.history.append(row)
    loop.losses = []
    progress.set_postfix({"train_loss": f"{row['train_loss']:.2f}", column: f"{val:.2f}"})
    log.info(
        "step %d: train loss %.3f, %s %.3f dB%s",
        loop.step,
        row["train_loss"],
        label,
        val,
        " (best)" if improved else "",
    )
    if improved:
        loop.best_val, loop.best_step, loop.stale = val, loop.step, 0
        loop.best_state = cpu_state(model)
        return False
    loop.stale += 1
    if loop.stale >= recipe.patience:
        log.info("early stop at step %d: no improvement in %d evaluations", loop.step, loop.stale)
        return True
    return False
