"""A real speaker's recordings in a corpus: which play which role, and the speaker's seed.

A LibriTTS speaker's utterances are the enrollment clip itself, readings of the
speaker's sentences (real speech for gt) or held out (the test set is drawn from these).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from workflow_scripts.files import corpora


def speaker_seed(seed: int, speaker: str) -> list[int]:
    """A seed sequence of (config seed, speaker id), stable across runs and machines."""
    return [seed, zlib.crc32(speaker.encode("utf-8"))]


def libritts_roles(utterances: pd.DataFrame, sentences: list[str], enrollment: str | Path | None = None
                   ) -> pd.DataFrame:
    """Each utterance's role: `enrollment` (the enrollment clip itself), `sentence` (it reads one of
    the speaker's sentences: real speech for gt) or `held_out` (neither: the test set is drawn
    from these). `sentence_index` orders the sentence readings as the sentences file does.

    The enrollment clip (when given) is recognised as the utterance of the same sample rate and length.
    """
    first_index = {}
    for index, sentence in enumerate(sentences):
        first_index.setdefault(corpora.text_key(sentence), index)
    enrollment_shape = None
    if enrollment is not None:
        info = sf.info(str(enrollment))
        enrollment_shape = (info.frames, info.samplerate)
    roles, indices = [], []
    for row in utterances.itertuples():
        keys = (corpora.text_key(row.original_text), corpora.text_key(row.normalized_text))
        matched = [first_index[k] for k in keys if k in first_index]
        shape = None
        if enrollment_shape is not None:
            info = sf.info(row.wav)
            shape = (info.frames, info.samplerate)
        if shape is not None and shape == enrollment_shape:
            roles.append("enrollment")
            indices.append(-1)
        elif matched:
            roles.append("sentence")
            indices.append(min(matched))
        else:
            roles.append("held_out")
            indices.append(-1)
    table = utterances.copy()
    table["role"], table["sentence_index"] = roles, indices
    return table


def choose_test_utterances(held_out: list[str], count: int, seed: list[int]) -> list[str]:
    """`count` utterance ids drawn (seeded) from `held_out`, in id order; all of them if fewer."""
    held_out = sorted(held_out)
    if len(held_out) <= count:
        return held_out
    rng = np.random.default_rng(seed)
    return sorted(held_out[i] for i in rng.choice(len(held_out), count, replace=False))


def libritts_test_set(resource: str | Path, libritts_id: str, sentences: list[str], enrollment: Path, count: int,
                      seed: list[int]) -> tuple[list[dict], dict]:
    """A LibriTTS speaker's clean test recordings: `count` of its held-out utterances (see
    libritts_roles) drawn with `seed`, as {id, source, text} each, and the record of the choice."""
    utterances = corpora.libritts_utterances(resource, libritts_id)
    roles = libritts_roles(utterances, sentences, enrollment)
    held_out = list(roles.utt_id[roles.role == "held_out"])
    if len(held_out) < count:
        raise ValueError(
            f"{corpora.libritts_speaker_dir(resource, libritts_id)}: {len(held_out)} utterances"
            f" read none of the speaker's sentences, fewer than the {count} test utterances"
        )
    chosen = choose_test_utterances(held_out, count, seed)
    wavs = dict(zip(roles.utt_id, roles.wav))
    record = {
        "kind": "reconstruction from LibriTTS test-clean (held-out utterances; the challenge's clean"
                " references are not public)",
        "libritts_id": libritts_id,
        "test_utterances": chosen,
        "enrollment_utterances": list(roles.utt_id[roles.role == "enrollment"]),
        "sentence_utterances": int((roles.role == "sentence").sum()),
        "held_out_utterances": len(held_out),
    }
    texts = dict(zip(utterances.utt_id, utterances.original_text))
    return [{"id": utt, "source": wavs[utt], "text": texts[utt]} for utt in chosen], record
