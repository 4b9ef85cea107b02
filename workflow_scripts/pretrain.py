"""Pre-train a generalist ConvTasNet on a background speech pool and generic noises.

All rows of the speech folder are used; the last `--num-val` utterances are
held out for validation. Writes out-dir/{model.pt, training_log.csv,
config.yaml, loss.png}, the folder appearing only when complete. With
`--resume-file`, a killed run started again continues where its last
checkpoint left off (see training.py).
"""

from __future__ import annotations

import argparse
import logging

import torch

from workflow_scripts.audio import atomic_dir
from workflow_scripts.convtasnet import MODEL_SIZES, build_model, count_parameters
from workflow_scripts.training import (
    CropMixer,
    DataError,
    Recipe,
    add_recipe_args,
    load_noises,
    load_utterances,
    read_noise_table,
    read_speech_folder,
    recipe_dict,
    recipe_from_args,
    remove_resume,
    resolve_device,
    seed_everything,
    train,
    validation_set,
    write_training_outputs,
)

log = logging.getLogger("pretrain")
DEFAULTS = Recipe(lr=1e-3, max_steps=1000, val_every=50, patience=5)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech-dir", required=True, help="background speech folder (manifest.csv)")
    parser.add_argument("--noise-dir", required=True, help="noise folder (noises.csv)")
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="tiny")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--num-val", type=int, default=10, help="last utterances held out for validation")
    add_recipe_args(parser, DEFAULTS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    recipe = recipe_from_args(args)

    manifest = read_speech_folder(args.speech_dir)
    read_noise_table(args.noise_dir)
    if not 1 <= args.num_val < len(manifest):
        raise DataError(
            f"{args.speech_dir}: {len(manifest)} utterances; --num-val {args.num_val} "
            "must leave at least one for training"
        )
    train_rows, val_rows = manifest.iloc[: -args.num_val], manifest.iloc[-args.num_val :]

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    seed_everything(recipe.seed)
    model = build_model(args.model_size)
    log.info(
        "%s model, %d parameters, on %s; %d training and %d validation utterances",
        args.model_size,
        count_parameters(model),
        device,
        len(train_rows),
        len(val_rows),
    )

    _, noises = load_noises(args.noise_dir)
    mixer = CropMixer(load_utterances(train_rows), noises, recipe)
    val_pairs = validation_set(load_utterances(val_rows), noises, recipe.seed, recipe.peak_normalize)
    result = train(model, mixer, val_pairs, recipe, device, args.resume_file, args.resume_every)
    log.info("best step %d: validation SDR %.3f dB", result.best_step, result.best_val_sdr_db)

    training_info = {
        "kind": "pretrain",
        "model_size": args.model_size,
        "recipe": recipe_dict(recipe),
        "speech_dir": str(args.speech_dir),
        "noise_dir": str(args.noise_dir),
        "num_train": len(train_rows),
        "num_val": len(val_rows),
        "init": None,
    }
    with atomic_dir(args.out_dir) as tmp:
        write_training_outputs(tmp, model, result, vars(args), training_info)
    log.info("wrote %s", args.out_dir)
    remove_resume(args.resume_file)


if __name__ == "__main__":
    main()
