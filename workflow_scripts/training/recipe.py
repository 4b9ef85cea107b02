"""The training recipe: its settings, their command-line options, and the defaults of each kind of run."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

GRAD_CLIP_NORM = 5.0
RESUME_EVERY = 25  # steps between resume files of a single model's run
STACKED_RESUME_EVERY = 300  # steps between resume files of a stack
# validation metric -> (history column, name in logs and plots)
VAL_METRICS = {"sdr": ("val_sdr_db", "validation SDR"), "si_sdri": ("val_si_sdri_db", "validation SI-SDRi")}


@dataclass(frozen=True)
class Recipe:
    batch_size: int = 8
    crop_seconds: float = 2.0
    lr: float = 1e-3
    snr_low_db: float = -5.0
    snr_high_db: float = 5.0
    max_steps: int = 1000
    val_every: int = 50
    patience: int = 5
    seed: int = 0
    peak_normalize: bool = False
    val_metric: str = "sdr"  # a key of VAL_METRICS: picks the best step and stops early


FINETUNE_DEFAULTS = Recipe(lr=1e-4, max_steps=200, val_every=10, patience=5)
PRETRAIN_DEFAULTS = Recipe(lr=1e-3, max_steps=1000, val_every=50, patience=5)


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)


def add_recipe_args(parser: argparse.ArgumentParser, defaults: Recipe, resume_every: int = RESUME_EVERY) -> None:
    """The recipe's options, and the run's --device, --threads, --resume-file and --resume-every."""
    group = parser.add_argument_group("recipe")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--crop-seconds", type=float, default=defaults.crop_seconds)
    group.add_argument("--lr", type=float, default=defaults.lr)
    group.add_argument("--snr-low", type=float, default=defaults.snr_low_db, help="dB")
    group.add_argument("--snr-high", type=float, default=defaults.snr_high_db, help="dB")
    group.add_argument(
        "--snr-db",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="the SNR range in dB at once (overrides --snr-low and --snr-high)",
    )
    group.add_argument("--max-steps", type=int, default=defaults.max_steps)
    group.add_argument("--val-every", type=int, default=defaults.val_every, help="steps")
    group.add_argument("--patience", type=int, default=defaults.patience, help="evaluations")
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument(
        "--peak-normalize",
        action="store_true",
        default=defaults.peak_normalize,
        help="peak-normalise each mixture (and its clean target)",
    )
    group.add_argument(
        "--val-metric",
        choices=sorted(VAL_METRICS),
        default=defaults.val_metric,
        help="validation score that picks the best step and stops early: mean SDR, or mean SI-SDR"
        " improvement over the mixture",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--resume-file",
        default=None,
        help="checkpoint of the loop's state: continued from when it exists, deleted when done",
    )
    parser.add_argument("--resume-every", type=int, default=resume_every, help="steps between resume checkpoints")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    if args.snr_db is not None:
        args.snr_low, args.snr_high = args.snr_db
    recipe = Recipe(
        batch_size=args.batch_size,
        crop_seconds=args.crop_seconds,
        lr=args.lr,
        snr_low_db=args.snr_low,
        snr_high_db=args.snr_high,
        max_steps=args.max_steps,
        val_every=args.val_every,
        patience=args.patience,
        seed=args.seed,
        peak_normalize=args.peak_normalize,
        val_metric=args.val_metric,
    )
    problems = [
        name
        for name, ok in [
            ("--batch-size >= 1", recipe.batch_size >= 1),
            ("--crop-seconds > 0", recipe.crop_seconds > 0),
            ("--lr > 0", recipe.lr > 0),
            ("--snr-low <= --snr-high", recipe.snr_low_db <= recipe.snr_high_db),
            ("--max-steps >= 1", recipe.max_steps >= 1),
            ("--val-every >= 1", recipe.val_every >= 1),
            ("--patience >= 1", recipe.patience >= 1),
            ("--threads >= 1", args.threads >= 1),
            ("--resume-every >= 1", args.resume_every >= 1),
            (f"--val-metric in {sorted(VAL_METRICS)}", recipe.val_metric in VAL_METRICS),
        ]
        if not ok
    ]
    if problems:
        raise ValueError(f"invalid recipe: need {', '.join(problems)}")
    return recipe


def check_shared(recipes: list[Recipe], fields: tuple[str, ...]) -> None:
    """ValueError unless every recipe has the same value of each field (models trained as one stack)."""
    for name in fields:
        values = {getattr(r, name) for r in recipes}
        if len(values) > 1:
            raise ValueError(f"stacked models must share {name}; got {sorted(values)}")
