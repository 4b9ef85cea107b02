"""Pre-train a generalist ConvTasNet on a background speech pool and generic noises.

All rows of the speech folder are used; the last `--num-val` utterances are
held out for validation. Training crops are read from disk as they are drawn
(file lengths from the headers, read once), so the pool may be far larger than
memory (LibriSpeech train-clean-100 + 360); the validation set is held in
memory. Validation mixes with `--val-noise-dir` when given (noises held out of
training), else with the training noises. Writes out-dir/{model.pt,
training_log.csv, config.yaml, loss.png}, the folder appearing only when
complete. With `--resume-file`, a killed run started again continues where its
last checkpoint left off (see training/resume.py).

With `--processes N` (N > 1) it trains data-parallel on N GPUs, one process each
(runtime/distributed.py): `--batch-size` stays the batch of one step, each
process taking batch / N of it; rank 0 validates and writes. Without a GPU it
trains in one process on the CPU, unless `--device cpu` asks for N CPU
processes. Started by `torchrun`, it is one of torchrun's processes.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from workflow_scripts.files.audio import atomic_dir
from workflow_scripts.files.folders import DataError, read_noise_table, read_speech_folder
from workflow_scripts.model.convtasnet import MODEL_SIZES, build_model, count_parameters
from workflow_scripts.runtime.distributed import (
    SINGLE,
    claim_devices,
    join_process_group,
    launch,
    launcher_world_size,
    per_process_batch,
)
from workflow_scripts.runtime.gpu import resolve_device
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.runtime.memory import keep_freed_memory
from workflow_scripts.training.data import AudioFiles, CropMixer, load_noises, load_utterances, validation_set
from workflow_scripts.training.loop import seed_everything, train
from workflow_scripts.training.outputs import pretrain_info, write_training_outputs
from workflow_scripts.training.recipe import PRETRAIN_DEFAULTS, VAL_METRICS, add_recipe_args, recipe_from_args
from workflow_scripts.training.resume import remove_resume

log = logging.getLogger("pretrain")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech-dir", required=True, help="background speech folder (manifest.csv)")
    parser.add_argument("--noise-dir", required=True, help="noise folder (noises.csv)")
    parser.add_argument(
        "--val-noise-dir",
        default=None,
        help="noise folder for the validation mixtures (default: --noise-dir)",
    )
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="tiny")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--num-val", type=int, default=10, help="last utterances held out for validation")
    parser.add_argument(
        "--read-threads", type=int, default=4, help="threads reading training crops from disk (per process)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes, one per GPU (on the CPU only with --device cpu); each takes"
        " --batch-size / N of every batch",
    )
    add_recipe_args(parser, PRETRAIN_DEFAULTS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    if args.read_threads < 1:
        raise ValueError("--read-threads must be >= 1")
    world_size = launcher_world_size() or args.processes
    per_process_batch(recipe.batch_size, world_size, "config generalist.pretrain_gpus and generalist.pretrain")

    manifest = read_speech_folder(args.speech_dir)
    noise_table = read_noise_table(args.noise_dir)
    if args.val_noise_dir is not None:
        read_noise_table(args.val_noise_dir)
    if not 1 <= args.num_val < len(manifest):
        raise DataError(
            f"{args.speech_dir}: {len(manifest)} utterances; --num-val {args.num_val} "
            "must leave at least one for training"
        )
    if launcher_world_size() is None and args.processes > 1:
        device_kind = claim_devices(args.device, args.processes)
        if device_kind is not None:
            launch("workflow_scripts.pretrain", [*argv, "--device", device_kind], args.processes)
            return
        log.warning("no GPU: --processes %d ignored, training in one process on the CPU", args.processes)
    group = join_process_group(args.device) if launcher_world_size() is not None else SINGLE
    try:
        pretrain(args, recipe, manifest, noise_table, group)
    finally:
        group.close()


def pretrain(args, recipe, manifest, noise_table, group) -> None:
    """Train and write the outputs (rank 0's part of a data-parallel run; the others train only)."""
    main = group.is_main
    train_rows, val_rows = manifest.iloc[: -args.num_val], manifest.iloc[-args.num_val :]
    speech = AudioFiles(train_rows["wav"], "speech", args.read_threads)
    noises = AudioFiles(noise_table["wav"], "noise", args.read_threads)
    val_pairs = []
    if main:
        val_noises = load_noises(args.val_noise_dir)[1] if args.val_noise_dir is not None else noises
        val_pairs = validation_set(load_utterances(val_rows), val_noises, recipe.seed, recipe.peak_normalize)

    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device)) if group is SINGLE else group.device
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the last one's memory (runtime.memory)
    seed_everything(recipe.seed)
    model = build_model(args.model_size)
    log.info(
        "%s model, %d parameters, on %s; %d training utterances (%.1f h) and %d noises (%.1f h) read"
        " from disk; %d validation utterances with %s noises, scored by %s",
        args.model_size,
        count_parameters(model),
        device,
        len(speech),
        speech.hours,
        len(noises),
        noises.hours,
        len(val_rows),
        "held-out" if args.val_noise_dir is not None else "the training",
        VAL_METRICS[recipe.val_metric][1],
    )

    if group.world_size > 1:
        log.info("data-parallel over %d processes: %d examples of each batch of %d per process",
                 group.world_size, recipe.batch_size // group.world_size, recipe.batch_size)
    mixer = CropMixer(speech, noises, recipe, read_threads=args.read_threads)
    result = train(
        model, mixer, val_pairs, recipe, device, args.resume_file, args.resume_every, prefetch=True, group=group
    )
    if not main:
        return
    log.info(
        "best step %d: %s %.3f dB", result.best_step, VAL_METRICS[recipe.val_metric][1], result.best_val_db
    )

    training_info = pretrain_info(args.model_size, recipe, args.speech_dir, args.noise_dir, args.val_noise_dir,
                                  len(train_rows), len(val_rows))
    with atomic_dir(args.out_dir) as tmp:
        write_training_outputs(tmp, model, result, vars(args), training_info)
    log.info("wrote %s", args.out_dir)
    remove_resume(args.resume_file)


if __name__ == "__main__":
    main()
