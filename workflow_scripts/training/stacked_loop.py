"""Train several ConvTasNets of one size together, as one computation: `train_stacked`.

Fine-tuning one small ConvTasNet at batch 8 leaves a GPU mostly idle: each
step is a few hundred small kernels. Here K models of the same config become
one model (`model.stacked.StackedConvTasNet`). Each model keeps its own
data, learning rate, gradient clipping, Adam state and early stopping, so
`train_stacked` gives each model what `training.loop.train` would give it
alone: the same in law with on-device crops (`DeviceCropMixer`), and the same
numbers up to float rounding with the plain trainer's own batches
(`CropMixerBatches`). The weights, their gradients and the Adam state live in
(K, P) buffers, so clipping and Adam are a handful of element-wise kernels
for all models; a model that stops early is dropped from the buffers and the
others continue. On a GPU with Triton the step runs the fused kernels and is
replayed as a CUDA graph; elsewhere it runs the eager ops. Speed, memory and
loss curves: bench/RESULTS.md, "Fine-tuning throughput".
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from workflow_scripts.files.folders import DataError
from workflow_scripts.model.convtasnet import ConvTasNet
from workflow_scripts.model.stacked import StackedConvTasNet
from workflow_scripts.training.data import MAX_DRAWS
from workflow_scripts.training.loop import TrainResult
from workflow_scripts.training.recipe import GRAD_CLIP_NORM, STACKED_RESUME_EVERY, Recipe, check_shared
from workflow_scripts.training.resume import ResumeFile, RunFingerprint
from workflow_scripts.training.stacked_data import StackedValidation

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32")
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the plain trainer uses
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


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


# ---- the training loop ------------------------------------------------------------------


@contextlib.contextmanager
def precision_mode(precision: str):
    """fp32: no TF32 anywhere; tf32: TF32 matmuls and convs (on a GPU; the CPU has no TF32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class StackedStep:
    """One optimisation step of all stacked models: loss, backward, per-model
    clipping and Adam. On a GPU (and `cuda_graph`), the step is captured once
    (after three eager steps) and replayed; inputs are copied into static
    buffers."""

    def __init__(self, stack: StackedConvTasNet, optimizer: StackedAdam, cuda_graph: bool = True,
                 max_norm: float = GRAD_CLIP_NORM):
        self.stack, self.optimizer, self.max_norm = stack, optimizer, max_norm
        self.cuda_graph = cuda_graph and stack.device.type == "cuda"
        self.eager_steps = 0
        self.graph = None

    def _update(self, mixtures, cleans) -> torch.Tensor:
        losses = self.stack.losses(mixtures, cleans)
        self.stack.backward(losses.sum())
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
                  device="cpu", *, dtype=torch.float32, precision: str = "fp32", step_losses: list | None = None,
                  progress: bool = True, resume_file: str | Path | None = None,
                  fingerprint: RunFingerprint | None = None,
                  resume_every: int = STACKED_RESUME_EVERY) -> list:
    """training.loop.train for K models at once.

    Returns, per model in order, its TrainResult, or the exception that ended
    it (FloatingPointError when its loss stopped being finite, DataError when
    its crops kept coming out silent) while the others went on. Each model is
    left in its final state, as the plain loop leaves it. `batches` is a
    DeviceCropMixer or CropMixerBatches for the same models; `step_losses`,
    if given, receives each model's per-step losses (numpy arrays).

    With `resume_file`, the whole state of the stack (weights, Adam, the
    early-stopping bookkeeping of every model, the models already finished,
    the crop sampler's random state) is written there every `resume_every`
    steps and on SIGTERM (after the step under way, then SystemExit), and a
    run given a file that holds a state of the same `fingerprint` (the
    caller's run_fingerprint of its recipe, models and data) continues from it:
    on the CPU it ends exactly as an uninterrupted run (see `training.resume`).
    """
    if len(models) != len(recipes):
        raise ValueError(f"{len(models)} models but {len(recipes)} recipes")
    check_shared(recipes, ("batch_size", "crop_seconds"))
    other_metrics = sorted({r.val_metric for r in recipes} - {"sdr"})
    if other_metrics:
        raise ValueError(f"train_stacked selects and stops by validation SDR only, not {', '.join(other_metrics)}")
    device = torch.device(device)
    resume = ResumeFile(resume_file, "stacked", fingerprint, resume_every, device)
    stack = StackedConvTasNet.from_models(models, device, dtype, fused=True)
    optimizer = StackedAdam(stack, [r.lr for r in recipes])
    saved = resume.load()

    def state() -> dict:
        return {"loop": loop.state(), "flat": stack.flat.detach().cpu().clone(), "optimizer": optimizer.state(),
                "batches": batches.state()}

    with precision_mode(precision), resume:
        step_fn = StackedStep(stack, optimizer)
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
            loop.record_losses(step_fn(mixtures, cleans), step, step_losses is not None)
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
            resume.end_of_step(step, max_steps, state)
        steps.close()
    if step_losses is not None:
        step_losses[:] = loop.step_losses()
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
        return loop

    def record_losses(self, losses: torch.Tensor, step: int, log_steps: bool) -> None:
        """A step's (K,) losses of the models still training, into the running sums (and, with
        `log_steps`, the per-step log)."""
        self.loss_sum += losses.double()
        self.first_bad_step = torch.where((self.first_bad_step == 0) & ~torch.isfinite(losses), step,
                                          self.first_bad_step)
        if log_steps:
            device = losses.device
            self.logged_losses.append(torch.full((len(self.results),), math.nan, device=device).index_copy(
                0, torch.as_tensor(self.ids, device=device), losses.float()))
        for row in range(len(self.ids)):
            self.loss_count[row] += 1

    def step_losses(self) -> list[np.ndarray]:
        """Each model's per-step losses, in order (a model's steps after it finished left out)."""
        curves = (torch.stack(self.logged_losses).cpu().numpy() if self.logged_losses
                  else np.zeros((0, len(self.results))))
        return [curves[:, k][~np.isnan(curves[:, k])] for k in range(len(self.results))]

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
