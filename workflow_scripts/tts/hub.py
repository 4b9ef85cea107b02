"""Released model files on the Hugging Face hub, read from the model folder first.

A backend that loads files of a hub repository (rather than a `from_pretrained`
folder) finds them here: in the Hugging Face cache under `model_dir` (where
download_models puts them), else fetched from the hub unless HF_HUB_OFFLINE
says not to. A failure names the backend, the repository, the file and what to
run. A local folder is never looked up here: backends read it as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from workflow_scripts.runtime import model_cache


def network_allowed() -> bool:
    """False when HF_HUB_OFFLINE says the hub must not be reached."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def hub_files(backend: str, repo: str, filenames: list[str] | tuple[str, ...],
              model_dir: str | os.PathLike) -> list[Path]:
    """The local paths of `filenames` of the hub repository `repo`, in that order."""
    from huggingface_hub import hf_hub_download

    cache_dir = model_cache.cache_dirs(model_dir)["huggingface"] / "hub"
    paths = []
    for filename in filenames:
        try:
            paths.append(Path(hf_hub_download(repo, filename, cache_dir=str(cache_dir), local_files_only=True)))
            continue
        except Exception as exc:  # noqa: BLE001 - not cached: fetched below, or the reason is given
            cached_error = exc
        if not network_allowed():
            raise RuntimeError(
                f"{backend}: {repo}/{filename} is not in {cache_dir} and network access is off "
                f"(HF_HUB_OFFLINE) ({_first_line(cached_error)}); fill the model folder with "
                "`python -m workflow_scripts.download_models`, or name a local folder"
            ) from cached_error
        try:
            paths.append(Path(hf_hub_download(repo, filename, cache_dir=str(cache_dir))))
        except Exception as exc:
            raise RuntimeError(
                f"{backend}: cannot load {repo}/{filename}: not in {cache_dir} and it could not be fetched "
                f"({_first_line(exc)}); fill the model folder with `python -m workflow_scripts.download_models` "
                "where there is internet, or name a local folder"
            ) from exc
    return paths
