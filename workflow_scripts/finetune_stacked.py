"""Fine-tune a generalist on several conditions of one speaker at once (stacked).

Each `--member SPEECH_DIR NUM_TRAIN NUM_VAL OUT_DIR` is what one finetune.py
run would be (`--speech-dir`, `--num-train`, `--num-val`, `--out-dir`); all
members share the generalist, the speaker's noise folder and the recipe, and
train together as one computation (training/stacked_loop.py): each keeps its
own data, Adam state and early stopping. Every member's out-dir gets what
finetune.py writes (model.pt, training_log.csv, config.yaml, loss.png); the
folders appear only when every member has trained, none if one fails.

`--batches plain` draws each member's batches exactly as finetune.py does (one
CropMixer per member, on the CPU): with `--precision fp32` the results equal
separate finetune.py runs up to float rounding. `--batches device` mixes crops
on the device with the same law (DeviceCropMixer), which is what makes a
stack fast on a GPU. On a GPU with Triton the step runs the fused kernels and
is replayed as a CUDA graph; on the CPU it runs the eager ops.

With `--resume-file`, the whole stack's state is written there every
`--resume-every` steps (default 300) and on SIGTERM, and a killed run started
again with the same arguments and data continues from it (on the CPU it ends
exactly as an uninterrupted run); the file is deleted once the outputs are
written. A file of other arguments, another generalist or other data is
ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from workflow_scripts.files.audio import atomic_dir
from workflow_scripts.files.folders import DataError, read_noise_table, read_speech_folder
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.runtime.gpu import resolve_device, stack_slots_from_env
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.runtime.memory import keep_freed_memory
from workflow_scripts.training.data import CropMixer, load_noises, nested_subsets, shared_utterances, validation_set
from workflow_scripts.training.loop import seed_everything
from workflow_scripts.training.outputs import finetune_info, write_training_outputs
from workflow_scripts.training.recipe import (
    FINETUNE_DEFAULTS,
    STACKED_RESUME_EVERY,
    add_recipe_args,
    recipe_from_args,
)
from workflow_scripts.training.resume import RunFingerprint, remove_resume, run_fingerprint
from workflow_scripts.training.stacked_data import CropMixerBatches, DeviceCropMixer, StackedValidation
from workflow_scripts.training.stacked_loop import PRECISIONS, train_stacked

log = logging.getLogger("finetune_stacked")
BATCHES = ("device", "plain")


@dataclass
class Member:
    """One condition of the stack: what one finetune.py run would fine-tune on."""

    number: int  # 1-based, in the order given
    speech_dir: str
    num_train: int
    num_val: int
    out_dir: str

    @property
    def label(self) -> str:
        return f"member {self.number} ({self.speech_dir}: {self.num_train} train, {self.num_val} val -> {self.out_dir})"


class StackedTrainingError(RuntimeError):
    """A member's training failed (diverged, or its crops kept coming out silent)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="checkpoint of the generalist")
    parser.add_argument("--noise-dir", required=True, help="the speaker's noise folder (noises.csv)")
    parser.add_argument(
        "--member",
        nargs=4,
        action="append",
        required=True,
        metavar=("SPEECH_DIR", "NUM_TRAIN", "NUM_VAL", "OUT_DIR"),
        help="one condition: speech folder (manifest.csv), utterances for training and for"
        " validation, output folder (repeat for each condition)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (exact on the CPU), tf32 (TF32 matmuls and convs on a GPU)",
    )
    parser.add_argument(
        "--batches",
        choices=BATCHES,
        default="device",
        help="device: crops mixed on the device (DeviceCropMixer, seeded by --seed); plain: each"
        " member's batches exactly as finetune.py draws them (CropMixer on the CPU)",
    )
    parser.add_argument(
        "--gpu-slots",
        type=int,
        default=None,
        help="slots of one GPU this job claims (the rule passes the units of the gpu resource it counts for"
        " the job; default: GENDA_STACK_SLOTS, more than half of a GPU's slots, see runtime/gpu.py)",
    )
    add_recipe_args(parser, FINETUNE_DEFAULTS, resume_every=STACKED_RESUME_EVERY)
    return parser.parse_args(argv)


def parse_members(raw: list[list[str]]) -> list[Member]:
    members = []
    for number, (speech_dir, num_train, num_val, out_dir) in enumerate(raw, start=1):
        try:
            counts = int(num_train), int(num_val)
        except ValueError:
            raise ValueError(
                f"--member {number} ({speech_dir} -> {out_dir}): NUM_TRAIN and NUM_VAL must be"
                f" integers, got {num_train!r} and {num_val!r}"
            ) from None
        members.append(Member(number, speech_dir, *counts, out_dir))
    seen: dict[Path, Member] = {}
    for member in members:
        key = Path(member.out_dir).resolve()
        if key in seen:
            raise ValueError(
                f"{member.label}: out dir {member.out_dir} is also that of {seen[key].label};"
                " every member needs its own"
            )
        seen[key] = member
    return members


def member_rows(members: list[Member]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(validation rows, training rows) of every member; a missing or short manifest
    is a DataError naming the member and its folder."""
    rows = []
    for member in members:
        try:
            manifest = read_speech_folder(member.speech_dir)
            rows.append(nested_subsets(manifest, member.num_train, member.num_val, folder=member.speech_dir))
        except DataError as exc:
            raise DataError(f"{member.label}: {exc}") from exc
    return rows


def member_config(args: argparse.Namespace, member: Member, num_members: int) -> dict:
    """The config.yaml of a member: finetune.py's (its arguments), and the stack's."""
    shared = {key: value for key, value in vars(args).items() if key not in ("init", "noise_dir", "member")}
    return {
        "init": args.init,
        "speech_dir": member.speech_dir,
        "num_train": member.num_train,
        "num_val": member.num_val,
        "noise_dir": args.noise_dir,
        "out_dir": member.out_dir,
        **shared,
        "stacked_with": num_members,
    }


def stack_fingerprint(args, recipe, generalist, train_sets, val_sets, noises) -> RunFingerprint:
    """training.resume.run_fingerprint of what a stacked run depends on: recipe,
    precision, batches, the generalist's weights, and every member's training
    and validation audio in order."""
    settings = {"recipe": asdict(recipe), "precision": args.precision, "batches": args.batches,
                "members": len(train_sets)}
    validation = [[a for pair in pairs for a in pair] for pairs in val_sets]
    return run_fingerprint(settings, generalist, [noises, *train_sets, *validation])


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    if recipe.val_metric != "sdr":
        raise ValueError(
            f"--val-metric {recipe.val_metric}: stacked fine-tuning selects the best step and stops"
            " early by validation SDR only; use --val-metric sdr, or finetune.py per condition"
        )

    # every member's inputs, before any audio is read
    members = parse_members(args.member)
    rows = member_rows(members)
    read_noise_table(args.noise_dir)
    generalist, _ = load_checkpoint(args.init)

    torch.set_num_threads(args.threads)
    # a stack fills much of a GPU by itself: it claims more than half of the GPU's slots, so that no
    # other stack shares the GPU; as many as the rule counted for it (runtime/gpu.py)
    slots = stack_slots_from_env() if args.gpu_slots is None else args.gpu_slots
    device = torch.device(resolve_device(args.device, slots=slots))
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the last one's memory (runtime.memory)
    seed_everything(recipe.seed)
    log.info(
        "fine-tuning %s on %d conditions together, on %s (%s, %s batches)",
        args.init,
        len(members),
        device,
        args.precision,
        args.batches,
    )
    _, noises = load_noises(args.noise_dir)
    cache: dict = {}
    train_sets, val_sets = [], []
    for member, (val_rows, train_rows) in zip(members, rows):
        train_sets.append(shared_utterances(train_rows, cache))
        val_sets.append(validation_set(shared_utterances(val_rows, cache), noises, recipe.seed, recipe.peak_normalize))
        log.info("%s", member.label)

    recipes = [recipe] * len(members)
    if args.batches == "plain":
        batches = CropMixerBatches([CropMixer(u, noises, recipe) for u in train_sets], recipes, device)
    else:
        batches = DeviceCropMixer(train_sets, [noises] * len(members), recipes, device, seed=recipe.seed)
    validation = StackedValidation(val_sets, device)
    models = [copy.deepcopy(generalist) for _ in members]
    fingerprint = stack_fingerprint(args, recipe, generalist, train_sets, val_sets, noises) if args.resume_file else None
    results = train_stacked(models, batches, validation, recipes, device, precision=args.precision,
                            resume_file=args.resume_file, fingerprint=fingerprint, resume_every=args.resume_every)

    failed = [(member, result) for member, result in zip(members, results) if isinstance(result, BaseException)]
    if failed:
        raise StackedTrainingError(
            "stacked fine-tuning failed, nothing written: "
            + "; ".join(f"{member.label}: {result}" for member, result in failed)
        ) from failed[0][1]
    for member, result in zip(members, results):
        log.info(
            "%s: best step %d: %s %.3f dB (initial %.3f dB)",
            member.label,
            result.best_step,
            result.val_column,
            result.best_val_db,
            result.history[0][result.val_column],
        )

    # every folder appears only once all are written
    with contextlib.ExitStack() as folders:
        for member, model, result in zip(members, models, results):
            tmp = folders.enter_context(atomic_dir(member.out_dir))
            training_info = finetune_info(model, recipe, result, args.init, member.speech_dir, args.noise_dir,
                                          member.num_train, member.num_val) | {"stacked_with": len(members)}
            write_training_outputs(tmp, model, result, member_config(args, member, len(members)), training_info)
    for member in members:
        log.info("wrote %s", member.out_dir)
    remove_resume(args.resume_file)


if __name__ == "__main__":
    main()
