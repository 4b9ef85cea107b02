"""Torch files (model checkpoints, resume files, voice conditioning): written atomically, and
read with an error that names the file and what to do about it.

A torch file cut short (a copy or a transfer that stopped) or otherwise corrupt makes
torch.load fail deep inside its zip or pickle reader; load_torch turns that into one line
naming the file, the cause and the remedy.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from workflow_scripts.files.audio import write_bytes

# what to do about a file that the workflow made (snakemake makes it again once it is gone)
REBUILD = "delete it and rerun: snakemake will rebuild it"


class TorchFileError(ValueError):
    """A torch file that cannot be read; the message names it, the cause and the remedy."""

    def __init__(self, path: Path, what: str, cause: str, remedy: str) -> None:
        super().__init__(f"{path}: not a readable {what} (truncated or corrupt: {cause}); {remedy}")
        self.path, self.cause = path, cause


def save_torch(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically (see files.audio.write_bytes: a full disk names `path`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's type and the first sentence of its message, at most `limit` characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0].split('. ')[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_torch(path: str | os.PathLike, what: str, remedy: str = REBUILD, map_location="cpu"):
    """torch.load of `path` (onto the CPU unless `map_location` says otherwise). A missing file raises FileNotFoundError, an unreadable
    one TorchFileError (`what` names the kind of file, `remedy` says what to do), both naming
    the file, never torch's own traceback."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and storage errors of many types
        # `from None`: the message says what the reader's traceback would, in one line
        raise TorchFileError(path, what, first_line(exc), remedy) from None
