"""Fine-tune a generalist ConvTasNet on one speaker's speech and noises.

The first `--num-val` rows of the speech folder validate, the next
`--num-train` rows train (nested subsets). The initial model's validation
score is history row 0, so the kept model may be the unmodified generalist.
Writes out-dir/{model.pt, training_log.csv, config.yaml, loss.png}, the folder
appearing only when complete. With `--resume-file`, a killed run started
again continues where its last checkpoint left off (see training/resume.py).
"""

from __future__ import annotations

import argparse
import logging

import torch

from workflow_scripts.files.audio import atomic_dir
from workflow_scripts.files.folders import read_noise_table, read_speech_folder
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.runtime.gpu import resolve_device
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.runtime.memory import keep_freed_memory
from workflow_scripts.training.data import CropMixer, load_noises, load_utterances, nested_subsets, validation_set
from workflow_scripts.training.loop import train
from workflow_scripts.training.outputs import finetune_info, write_training_outputs
from workflow_scripts.training.recipe import FINETUNE_DEFAULTS, add_recipe_args, recipe_from_args
from workflow_scripts.training.resume import remove_resume

log = logging.getLogger("finetune")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="checkpoint of the generalist")
    parser.add_argument("--speech-dir", required=True, help="speech folder (manifest.csv)")
    parser.add_argument("--num-train", type=int, required=True, help="utterances for training")
    parser.add_argument("--num-val", type=int, required=True, help="utterances for validation")
    parser.add_argument("--noise-dir", required=True, help="the speaker's noise folder (noises.csv)")
    parser.add_argument("--out-dir", required=True)
    add_recipe_args(parser, FINETUNE_DEFAULTS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    recipe = recipe_from_args(args)

    manifest = read_speech_folder(args.speech_dir)
    val_rows, train_rows = nested_subsets(manifest, args.num_train, args.num_val, folder=args.speech_dir)
    read_noise_table(args.noise_dir)

    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the last one's memory (runtime.memory)
    model, _ = load_checkpoint(args.init)
    log.info(
        "fine-tuning %s on %s: %d training, %d validation utterances, on %s",
        args.init,
        args.speech_dir,
        len(train_rows),
        len(val_rows),
        device,
    )

    _, noises = load_noises(args.noise_dir)
    mixer = CropMixer(load_utterances(train_rows), noises, recipe)
    val_pairs = validation_set(load_utterances(val_rows), noises, recipe.seed, recipe.peak_normalize)
    result = train(model, mixer, val_pairs, recipe, device, args.resume_file, args.resume_every)
    log.info(
        "best step %d: %s %.3f dB (initial %.3f dB)",
        result.best_step,
        result.val_column,
        result.best_val_db,
        result.history[0][result.val_column],
    )

    training_info = finetune_info(model, recipe, result, args.init, args.speech_dir, args.noise_dir,
                                  args.num_train, args.num_val)
    with atomic_dir(args.out_dir) as tmp:
        write_training_outputs(tmp, model, result, vars(args), training_info)
    log.info("wrote %s", args.out_dir)
    remove_resume(args.resume_file)


if __name__ == "__main__":
    main()
