"""Sentence files: one sentence per line, UTF-8.

- a sentence pool (the demo world's workflow_scripts/data/sentences.txt): its non-empty lines;
- a speaker's sentences file (sentences.txt, what the TTS systems read, in order): every
  line a sentence of at most MAX_SENTENCE_CHARS characters; blank lines at the end are
  ignored, others are an error.
"""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.files.audio import atomic_write_text

MAX_SENTENCE_CHARS = 400  # a longer line is most likely not one sentence


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentences file not found")
    return path.read_text(encoding="utf-8").splitlines()


def read_sentence_pool(path: str | Path) -> list[str]:
    """The non-empty lines of a sentence pool, stripped."""
    path = Path(path)
    sentences = [line.strip() for line in _lines(path) if line.strip()]
    if not sentences:
        raise ValueError(f"{path}: sentences file has no sentences")
    return sentences


def read_sentence_file(path: str | Path) -> list[str]:
    """The lines of a speaker's sentences file, stripped; an empty line before the last
    sentence is an error naming it."""
    path = Path(path)
    lines = _lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}: line {number} is empty")
        if len(folded := " ".join(line.split())) > MAX_SENTENCE_CHARS:
            raise ValueError(f"{path}: line {number} has {len(folded)} characters, "
                             f"more than the maximum of {MAX_SENTENCE_CHARS} for one sentence")
    if not lines:
        raise ValueError(f"{path}: no sentences")
    return [line.strip() for line in lines]


def write_sentence_file(path: str | Path, sentences: list[str]) -> None:
    """One sentence per line, atomically."""
    atomic_write_text(path, "\n".join(sentences) + "\n")
