"""The voice conditioning file: what clone_voice writes and synthesize reads.

One torch file per (TTS system, speaker): {"backend", "options",
"conditioning", "enrollment"}, written atomically.
"""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.files.checkpoints import load_torch, save_torch

VOICE_KEYS = ("backend", "options", "conditioning")


def write_voice(record: dict, path: Path) -> None:
    """torch.save to a temporary name beside `path`, then rename."""
    save_torch(record, path)


def read_voice(voice_pt: Path, backend_name: str) -> dict:
    """The conditioning file written by clone_voice, checked to belong to `backend_name`. A
    missing file raises FileNotFoundError, a truncated or corrupt one TorchFileError (a
    ValueError) saying to delete it, both naming the file."""
    record = load_torch(voice_pt, "voice conditioning file")
    if not isinstance(record, dict) or not set(VOICE_KEYS) <= set(record):
        raise ValueError(
            f"{voice_pt}: not a voice conditioning file (expected keys {', '.join(VOICE_KEYS)})"
        )
    if record["backend"] != backend_name:
        raise ValueError(
            f"{voice_pt}: conditioning was made by backend {record['backend']!r}, not {backend_name!r}"
        )
    return record
