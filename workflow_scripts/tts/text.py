"""Text handling shared by the TTS backends.

A model has a limit on the text it takes in one pass (characters or tokens).
Longer text is split at sentence boundaries, then at clause boundaries
(`;`, `:`, `,`), then between words, and never truncated: joining the pieces
with spaces gives back the normalised input.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[;:,])\s+")


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive pieces while they fit in `max_chars`."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_words(text: str, max_chars: int) -> list[str]:
    words = text.split()
    too_long = [w for w in words if len(w) > max_chars]
    if too_long:
        raise ValueError(
            f"cannot split text for a {max_chars}-character limit without breaking the word {too_long[0]!r}"
        )
    return _pack(words, max_chars)


def split_text(text: str, max_chars: int) -> list[str]:
    """Split `text` into pieces of at most `max_chars` characters.

    Sentence boundaries first; a sentence still too long is split at clause
    boundaries, then between words. Whitespace is normalised to single spaces.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    text = " ".join(text.split())
    if not text:
        return []
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _CLAUSE_END.split(sentence):
            clause = clause.strip()
            if len(clause) <= max_chars:
                pieces.append(clause)
            else:
                pieces.extend(_split_words(clause, max_chars))
    return _pack(pieces, max_chars)
