"""What a training run writes: model.pt, training_log.csv, config.yaml and loss.png, and the
`training` section of its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.model.convtasnet import ConvTasNet, save_checkpoint, size_name
from workflow_scripts.training.loop import TrainResult
from workflow_scripts.training.recipe import VAL_METRICS, Recipe, recipe_dict


def finetune_info(model: ConvTasNet, recipe: Recipe, result: TrainResult, init, speech_dir, noise_dir,
                  num_train: int, num_val: int) -> dict:
    """The `training` section of a fine-tuned model's checkpoint."""
    return {
        "kind": "finetune",
        "model_size": size_name(model.config),
        "recipe": recipe_dict(recipe),
        "speech_dir": str(speech_dir),
        "noise_dir": str(noise_dir),
        "num_train": num_train,
        "num_val": num_val,
        "init": str(init),
        f"init_{result.val_column}": result.history[0][result.val_column],
    }


def pretrain_info(model_size: str, recipe: Recipe, speech_dir, noise_dir, val_noise_dir, num_train: int,
                  num_val: int) -> dict:
    """The `training` section of a pre-trained model's checkpoint."""
    return {
        "kind": "pretrain",
        "model_size": model_size,
        "recipe": recipe_dict(recipe),
        "speech_dir": str(speech_dir),
        "noise_dir": str(noise_dir),
        "val_noise_dir": None if val_noise_dir is None else str(val_noise_dir),
        "num_train": num_train,
        "num_val": num_val,
        "init": None,
    }


def plot_history(history: pd.DataFrame, png_path: Path, val_metric: str = "sdr") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(2, 1, sharex=True, figsize=(6, 5))
    trained = history[history["step"] > 0]
    ax_loss.plot(trained["step"], trained["train_loss"], marker=".")
    ax_loss.set_ylabel("train loss (-SDR, dB)")
    column, label = VAL_METRICS[val_metric]
    ax_val.plot(history["step"], history[column], marker=".")
    best = history.loc[history[column].idxmax()]
    ax_val.axvline(best["step"], color="grey", linestyle="--", label=f"best: step {int(best['step'])}")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel(f"{label} (dB)")
    ax_val.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def write_training_outputs(
    out_dir: Path, model: ConvTasNet, result: TrainResult, config: dict, training_info: dict
) -> None:
    """model.pt (best state), training_log.csv, config.yaml, loss.png into `out_dir`.
    The validation column is named after the metric (val_sdr_db, val_si_sdri_db),
    and so is the best score in the checkpoint (best_val_sdr_db, ...)."""
    import yaml

    model.load_state_dict(result.best_state)
    column = result.val_column
    training = {**training_info, "best_step": result.best_step, f"best_{column}": result.best_val_db}
    save_checkpoint(out_dir / "model.pt", model.cpu(), {"training": training})
    history = pd.DataFrame(result.history, columns=["step", "train_loss", column, "best"])
    atomic_write_text(out_dir / "training_log.csv", history.to_csv(index=False))
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    plot_history(history, out_dir / "loss.png", result.val_metric)
