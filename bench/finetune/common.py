"""What the fine-tuning benches share: the demo-world data, timing, and the two steps they compare.

- `world_data(world_dir)`: one demo-world speaker built with the project's world builder
  (`workflow_scripts.world.speakers.build_speaker`, which needs flite) into `world_dir` on first use;
  its gt speech and noises are kept there as `world.npz` too, so that a machine without the audio stack
  (a GPU machine) reads numpy alone once the folder is carried there.
- `PlainTrainer`: the plain trainer's step (`training.loop.train`'s loop body: CropMixer batches drawn
  on the CPU, Adam, gradient clipping, loss.item() every step), one model.
- `StackedTrainer`: the stacked step as `finetune_stacked` runs it (`training.stacked_loop`: crops
  mixed on the device, the fused kernels and a CUDA graph on a GPU with Triton, the eager ops elsewhere).
- `timed`, `sync`, `free_memory`, `peak_gib`, `machine_name`, `run_info`.
- `dry_run`: what a bench's `--dry-run` prints (its plan, and whether this machine has what it needs).
"""

from __future__ import annotations

import datetime
import gc
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the workflow's package where it is not installed (a GPU machine)

from workflow_scripts.model.convtasnet import ConvTasNet, build_model, load_checkpoint  # noqa: E402
from workflow_scripts.model.stacked import StackedConvTasNet  # noqa: E402
from workflow_scripts.scoring.metrics import neg_sdr_loss  # noqa: E402
from workflow_scripts.training.data import CropMixer  # noqa: E402
from workflow_scripts.training.recipe import GRAD_CLIP_NORM, Recipe  # noqa: E402
from workflow_scripts.training.stacked_data import DeviceCropMixer  # noqa: E402
from workflow_scripts.training.stacked_loop import StackedAdam, StackedStep, precision_mode  # noqa: E402

SAMPLE_RATE = 16000
SIZES = ("tiny", "small", "medium")
WORLD_DIR = REPO / "data" / "bench_world"
GENDA25_DIR = Path(os.environ.get("GENDA25_DIR", REPO.parent / "shared" / "genda25"))  # the challenge's files
CHALLENGE_TINY = GENDA25_DIR / "checkpoints" / "convtasnet_tiny.pt"


# ---- data ---------------------------------------------------------------------------------


def world_data(world_dir: Path = WORLD_DIR, num_sentences: int = 24, num_noises: int = 3, seed: int = 1):
    """(speech, noises): a demo-world speaker's gt utterances and noises (lists of float32 arrays),
    built into `world_dir` on first use and read from its world.npz after."""
    cache = Path(world_dir) / "world.npz"
    if not cache.is_file():
        _build_world(Path(world_dir), num_sentences, num_noises, seed)
    packed = np.load(cache)
    speech = np.split(packed["speech"], np.cumsum(packed["speech_lengths"])[:-1])
    noises = np.split(packed["noises"], np.cumsum(packed["noise_lengths"])[:-1])
    return speech, noises


def _build_world(world_dir: Path, num_sentences: int, num_noises: int, seed: int) -> None:
    from workflow_scripts.files.folders import read_speech_folder
    from workflow_scripts.files.sentences import read_sentence_pool
    from workflow_scripts.training.data import load_noises, load_utterances
    from workflow_scripts.world.speakers import build_speaker

    speaker_dir = world_dir / "spk01"
    if not speaker_dir.is_dir():
        print(f"building a demo-world speaker into {speaker_dir} (flite and WORLD: a minute or two)", flush=True)
        pool = read_sentence_pool(REPO / "workflow_scripts" / "data" / "sentences.txt")
        build_speaker("spk01", seed, pool, num_sentences, 1, num_noises, [0.0], (5.0, 10.0),
                      ["kal16", "awb", "rms", "slt"], speaker_dir)
    speech = load_utterances(read_speech_folder(speaker_dir / "gt"))
    _, noises = load_noises(speaker_dir / "noises")
    np.savez_compressed(world_dir / "world.npz", speech=np.concatenate(speech), noises=np.concatenate(noises),
                        speech_lengths=[s.size for s in speech], noise_lengths=[n.size for n in noises])


def initial_model(checkpoint: str | Path | None = CHALLENGE_TINY) -> tuple[ConvTasNet, str]:
    """(model, what it is): the challenge's tiny generalist where the file is, else a built tiny model."""
    if checkpoint is not None and Path(checkpoint).is_file():
        return load_checkpoint(checkpoint)[0], f"challenge tiny generalist ({checkpoint})"
    torch.manual_seed(0)
    return build_model("tiny"), "tiny model, random init (seed 0)"


def bench_recipe(batch_size: int, crop_seconds: float, lr: float = 1e-3, seed: int = 0, **kwargs) -> Recipe:
    return Recipe(batch_size=batch_size, crop_seconds=crop_seconds, lr=lr, snr_low_db=-5.0, snr_high_db=5.0,
                  seed=seed, **kwargs)


# ---- timing ---------------------------------------------------------------------------------


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, steps: int | None = None, target_s: float = 2.0, max_steps: int = 200) -> float:
    """Seconds per call of fn: `warmup` calls, then `steps` timed calls (None: as many as fill
    about `target_s`, estimated on 3 calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if steps is None:
        start = time.perf_counter()
        for _ in range(3):
            fn()
        sync(device)
        estimate = (time.perf_counter() - start) / 3
        steps = int(min(max_steps, max(5, target_s / max(estimate, 1e-6))))
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    """Peak GPU memory allocated since the last `free_memory`, GiB (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if torch.device(device).type == "cuda" else None


def machine_name(device) -> str:
    """The machine kind of a run folder's name: the GPU's model and count ("h100", "h200x2"), or "cpu" and
    the CPU count ("cpu2")."""
    if torch.device(device).type == "cuda":
        models = re.findall(r"[a-z]+\d+", torch.cuda.get_device_name(device).lower())
        model = models[0] if models else "gpu"
        count = torch.cuda.device_count()
        return model + (f"x{count}" if count > 1 else "")
    return f"cpu{os.cpu_count()}"


def default_out(device) -> Path:
    """bench/runs/<UTC date>_<machine>/."""
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    return REPO / "bench" / "runs" / f"{date}_{machine_name(device)}"


def run_info(device) -> dict:
    """Date, device, library versions and the command line of a run."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": (torch.cuda.get_device_name(device) if torch.device(device).type == "cuda"
                   else f"cpu ({os.cpu_count()} cores)"),
        "torch": torch.__version__,
        "triton": triton_version,
        "command": " ".join(sys.argv),
    }


# ---- the two steps ------------------------------------------------------------------------------


class PlainTrainer:
    """The plain trainer's loop body, one model, step by step."""

    def __init__(self, model: ConvTasNet, speech, noises, device, recipe: Recipe):
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.mixer = CropMixer(speech, noises, recipe)
        self.rng = np.random.default_rng([recipe.seed, 0])
        self.optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        self.batch_size = recipe.batch_size

    def step(self) -> float:
        mixtures, cleans, _ = self.mixer.batch(self.rng, self.batch_size)
        estimate = self.model(torch.from_numpy(mixtures).to(self.device))
        loss = neg_sdr_loss(estimate, torch.from_numpy(cleans).to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
        self.optimizer.step()
        return loss.item()


class StackedTrainer:
    """K models stacked, crops mixed on the device, one step at a time, in a precision mode (a context
    manager). `fused` and `cuda_graph` as the workflow runs them by default (each where the device
    allows); False runs the eager stacked step."""

    def __init__(self, models, speech, noises, device, recipes: list[Recipe], precision: str = "tf32",
                 fused: bool = True, cuda_graph: bool = True, seed: int = 0):
        self.device = torch.device(device)
        self.mixer = DeviceCropMixer([speech] * len(models), [noises] * len(models), recipes, self.device,
                                     seed=seed)
        self.stack = StackedConvTasNet.from_models(models, self.device, fused=fused)
        self.step_fn = StackedStep(self.stack, StackedAdam(self.stack, [r.lr for r in recipes]), cuda_graph)
        self._mode = precision_mode(precision)

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)

    def step(self) -> torch.Tensor:
        return self.step_fn(*self.mixer.draw())


# ---- --dry-run ------------------------------------------------------------------------------------


def dry_run(plan: dict, device, world_dir: Path | None = None, checkpoint: Path | None = None,
            needs_triton: bool = False) -> None:
    """Print what a bench would run (`plan`) and whether this machine has what it needs: the
    device, Triton, the demo-world data (or flite to build it), the initial model. Trains nothing."""
    device = torch.device(device)
    lines = ["dry run: nothing is trained or timed", *(f"{key}: {value}" for key, value in plan.items())]
    problems = []
    if device.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"--device {device}: CUDA is not available here")
    if needs_triton:
        try:
            import triton  # noqa: F401
        except ImportError:
            problems.append("Triton is not installed (the fused kernels)")
    if world_dir is not None:
        cache = Path(world_dir) / "world.npz"
        if cache.is_file():
            lines.append(f"data: {cache}")
        else:
            lines.append(f"data: a demo-world speaker, built into {world_dir} on first use (flite and WORLD)")
            if shutil.which("flite") is None:
                problems.append(f"flite not found: the demo world cannot be built here (carry {cache})")
    if checkpoint is not None:
        found = Path(checkpoint).is_file()
        lines.append(f"initial model: {checkpoint}" if found else f"initial model: {checkpoint} absent, a tiny model"
                     " of random weights instead")
    lines.append("ready: yes" if not problems else "ready: no (" + "; ".join(problems) + ")")
    print("\n".join(lines))
