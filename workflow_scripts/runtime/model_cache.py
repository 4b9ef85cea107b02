"""One folder for every model cache the workflow uses.

Each library keeps its weights somewhere of its own (coqui: TTS_HOME, Hugging
Face: HF_HOME, Whisper: a download_root, speechbrain: a savedir). Here they all
live under one configurable folder (config `model_dir`, default `models/`), so
that a `download_models` job on a node with internet fills it once and compute
nodes without internet read from it:

    models/
      coqui/          TTS_HOME (coqui-tts model manager)
      huggingface/    HF_HOME (transformers, hub downloads)
      whisper/        openai-whisper checkpoints (<size>.pt)
      speechbrain/    one savedir per speechbrain model
      torch/          TORCH_HOME (torch.hub)

A model named in config by a local folder path (anything that exists on disk)
is loaded from that folder and never from the network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# The default models that score speech (the challenge's choices); the TTS backends' defaults
# are in the registry of workflow_scripts/tts.
XVECTOR_MODEL = "speechbrain/spkrec-xvect-voxceleb"
WHISPER_MODEL = "large-v3"
UTMOS_MODEL = "Blinorot/UTMOS-PyTorch"

SUBDIRS = {
    "coqui": "coqui",
    "huggingface": "huggingface",
    "whisper": "whisper",
    "speechbrain": "speechbrain",
    "torch": "torch",
}


def cache_dirs(model_dir: str | os.PathLike) -> dict[str, Path]:
    """The cache folder of each library under `model_dir` (pure: creates nothing)."""
    root = Path(model_dir)
    return {name: root / sub for name, sub in SUBDIRS.items()}


def cache_env(model_dir: str | os.PathLike) -> dict[str, str]:
    """Environment variables that point each library at its folder under `model_dir`."""
    dirs = {name: path.resolve() for name, path in cache_dirs(model_dir).items()}
    return {
        "TTS_HOME": str(dirs["coqui"]),
        "HF_HOME": str(dirs["huggingface"]),
        "TORCH_HOME": str(dirs["torch"]),
    }


def configure(model_dir: str | os.PathLike, offline: bool | None = None) -> dict[str, Path]:
    """Point the libraries at `model_dir` for this process; call before importing them.

    With `offline=True` the Hugging Face libraries are told not to touch the
    network (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE). Returns `cache_dirs(model_dir)`.
    """
    os.environ.update(cache_env(model_dir))
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return cache_dirs(model_dir)


def is_local(model: str | os.PathLike) -> bool:
    """True when `model` names a folder or file on disk rather than a hub id."""
    return Path(model).expanduser().exists()


def speechbrain_savedir(model_dir: str | os.PathLike, source: str) -> Path:
    """Where a speechbrain hub model (e.g. speechbrain/spkrec-xvect-voxceleb) is kept."""
    return cache_dirs(model_dir)["speechbrain"] / source.replace("/", "--")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a (weights) file, read in 16 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
