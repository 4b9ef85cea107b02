"""Readers of the external resources, in the layouts they are published in.

- GenDA 2025 challenge release (GitHub archive of JaesungBae/GenDA-Challenge-25-ZSTTS-PSE):
  data/{id}/reference_wav/{id}_ref.wav, data/{id}/mixed_wavs/{id}_mixed_NN.wav,
  data/synth_sentences.txt and data/synth_sentences_additional.txt (`refpath<TAB>text`,
  refpath starting with the speaker id), data/spk_noise_set.json (id -> MUSAN file names),
  checkpoints/generalists/*convtasnet_{size}.pt.
- LibriTTS (openslr 60): LibriTTS/{subset}/{speaker}/{chapter}/{utt}.wav (24 kHz) with
  {utt}.original.txt and {utt}.normalized.txt.
- MUSAN (openslr 17): musan/noise/{sound-bible,free-sound}/*.wav (16 kHz) beside ANNOTATIONS
  and LICENSE files.
- LibriSpeech (openslr 12): LibriSpeech/{subset}/{speaker}/{chapter}/{speaker}-{chapter}-{n}.flac
  with {speaker}-{chapter}.trans.txt.

Each resource folder may hold the archive's layout or a folder inside it (a linked local
copy): the readers look for the expected sub-folder at the usual depths.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd


class ResourceError(ValueError):
    """A resource folder that lacks what is expected, with the path named."""


def find_dir(root: str | Path, candidates: list[str], what: str) -> Path:
    """The first of root/candidate that is a folder."""
    root = Path(root)
    for candidate in candidates:
        path = root / candidate if candidate else root
        if path.is_dir():
            return path
    tried = ", ".join(str(root / c) if c else str(root) for c in candidates)
    raise ResourceError(f"{root}: no {what} found (looked for {tried})")


# ---- the GenDA 2025 challenge release ----------------------------------------------


def challenge_data_dir(release: str | Path) -> Path:
    data = find_dir(release, ["data"], "GenDA 2025 challenge release (its data/ folder)")
    if not (data / "synth_sentences.txt").is_file():
        raise ResourceError(f"{data}: synth_sentences.txt not found: not a GenDA 2025 challenge release")
    return data


def challenge_speaker_dir(release: str | Path, speaker_id: str) -> Path:
    folder = challenge_data_dir(release) / speaker_id
    if not folder.is_dir():
        known = sorted(p.name for p in challenge_data_dir(release).iterdir() if (p / "reference_wav").is_dir())
        raise ResourceError(f"{folder}: challenge speaker {speaker_id} not found (known: {', '.join(known)})")
    return folder


def challenge_enrollment(release: str | Path, speaker_id: str) -> Path:
    path = challenge_speaker_dir(release, speaker_id) / "reference_wav" / f"{speaker_id}_ref.wav"
    if not path.is_file():
        raise ResourceError(f"{path}: enrollment clip not found")
    return path


def challenge_sentences(release: str | Path, speaker_id: str, additional: bool = False) -> list[str]:
    """The speaker's lines of synth_sentences(.txt|_additional.txt), in file order."""
    name = "synth_sentences_additional.txt" if additional else "synth_sentences.txt"
    path = challenge_data_dir(release) / name
    if not path.is_file():
        raise ResourceError(f"{path}: sentence list not found")
    sentences = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        ref, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise ResourceError(f"{path}: line {number} is not `refpath<TAB>text`")
        if ref.split("/")[0] == speaker_id:
            sentences.append(text.strip())
    if not sentences:
        raise ResourceError(f"{path}: no sentences for speaker {speaker_id}")
    return sentences


def challenge_noise_names(release: str | Path, speaker_id: str) -> list[str]:
    path = challenge_data_dir(release) / "spk_noise_set.json"
    if not path.is_file():
        raise ResourceError(f"{path}: noise-set list not found")
    noise_sets = json.loads(path.read_text())
    if speaker_id not in noise_sets:
        raise ResourceError(f"{path}: no noise set for speaker {speaker_id}")
    return [str(name) for name in noise_sets[speaker_id]]


def challenge_mixtures(release: str | Path, speaker_id: str) -> list[Path]:
    """The speaker's test mixtures {id}_mixed_NN.wav, by NN."""
    folder = challenge_speaker_dir(release, speaker_id) / "mixed_wavs"
    pattern = re.compile(rf"^{re.escape(speaker_id)}_mixed_(\d+)\.wav$")
    numbered = [(int(m.group(1)), p) for p in folder.glob("*.wav") if (m := pattern.match(p.name))]
    if not numbered:
        raise ResourceError(f"{folder}: no test mixtures {speaker_id}_mixed_NN.wav")
    return [path for _, path in sorted(numbered)]


CHALLENGE_SIZES = ("tiny", "small", "medium")


def challenge_checkpoint(release: str | Path, model_size: str) -> Path:
    """checkpoints/generalists/*convtasnet_{size}.pt (the file names carry a training date)."""
    if model_size not in CHALLENGE_SIZES:
        raise ResourceError(
            f"the challenge released no {model_size} generalist (only {', '.join(CHALLENGE_SIZES)});"
            " pre-train one instead (generalist.source: pretrain)"
        )
    folder = find_dir(release, ["checkpoints/generalists"], "generalist checkpoints")
    matches = sorted(folder.glob(f"*convtasnet_{model_size}.pt"))
    if len(matches) != 1:
        found = ", ".join(p.name for p in sorted(folder.glob("*.pt"))) or "none"
        raise ResourceError(
            f"{folder}: expected one *convtasnet_{model_size}.pt, found {len(matches)} (checkpoints: {found})"
        )
    return matches[0]


# ---- LibriTTS ---------------------------------------------------------------------


def libritts_speaker_dir(resource: str | Path, speaker_id: str, subset: str = "test-clean") -> Path:
    root = find_dir(resource, [f"LibriTTS/{subset}", subset, ""], f"LibriTTS {subset}")
    folder = root / str(speaker_id)
    if not folder.is_dir():
        raise ResourceError(f"{folder}: LibriTTS {subset} speaker {speaker_id} not found")
    return folder


def libritts_utterances(resource: str | Path, speaker_id: str, subset: str = "test-clean") -> pd.DataFrame:
    """utt_id, wav, original_text, normalized_text of one speaker, sorted by utt_id."""
    folder = libritts_speaker_dir(resource, speaker_id, subset)
    rows = []
    for wav in sorted(folder.glob("*/*.wav")):
        texts = {}
        for kind in ("original", "normalized"):
            text_file = wav.with_name(f"{wav.stem}.{kind}.txt")
            texts[kind] = text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
        if not texts["original"] and not texts["normalized"]:
            raise ResourceError(f"{wav}: no .original.txt or .normalized.txt beside it")
        rows.append({"utt_id": wav.stem, "wav": str(wav), "original_text": texts["original"] or texts["normalized"],
                     "normalized_text": texts["normalized"] or texts["original"]})
    if not rows:
        raise ResourceError(f"{folder}: no utterances (*/*.wav)")
    return pd.DataFrame(rows)


def text_key(text: str) -> str:
    """Lower case letters and digits only: how sentence lists and transcripts are matched."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


# ---- MUSAN ------------------------------------------------------------------------------


def musan_noise_dir(resource: str | Path, kind: str) -> Path:
    return find_dir(resource, [f"musan/noise/{kind}", f"noise/{kind}", kind], f"MUSAN noise/{kind}")


def musan_noise_files(resource: str | Path, kind: str) -> list[Path]:
    """The recordings of musan/noise/{kind}, by name (ANNOTATIONS and LICENSE left out)."""
    folder = musan_noise_dir(resource, kind)
    files = sorted(p for p in folder.glob("*.wav"))
    if not files:
        raise ResourceError(f"{folder}: no .wav files")
    return files


# ---- LibriSpeech -------------------------------------------------------------------


def librispeech_dir(resource: str | Path) -> Path:
    """The subset folder (e.g. LibriSpeech/train-clean-100) of a LibriSpeech resource."""
    resource = Path(resource)
    outer = resource / "LibriSpeech"
    base = outer if outer.is_dir() else resource
    subsets = sorted(p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"(train|dev|test)-\w+(-\d+)?", p.name))
    if len(subsets) == 1:
        return subsets[0]
    if not subsets and any(p.name.isdigit() for p in base.iterdir() if p.is_dir()):
        return base  # already the subset folder
    raise ResourceError(f"{resource}: expected one LibriSpeech subset folder, found {[p.name for p in subsets]}")


def librispeech_utterances(subset_dir: str | Path) -> pd.DataFrame:
    """utt_id, speaker, flac, text of a LibriSpeech subset, sorted by (speaker, chapter, utterance)."""
    subset_dir = Path(subset_dir)
    rows = []
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.partition(" ")
            flac = trans.parent / f"{utt_id}.flac"
            if not flac.is_file():
                raise ResourceError(f"{trans}: line {number} names {flac.name}, which is missing")
            rows.append({"utt_id": utt_id, "speaker": utt_id.split("-")[0], "flac": str(flac), "text": text})
    if not rows:
        raise ResourceError(f"{subset_dir}: no transcripts (*/*/*.trans.txt)")
    table = pd.DataFrame(rows)
    order = table.utt_id.str.split("-", expand=True).astype(int)
    return table.iloc[order.sort_values(list(order.columns)).index].reset_index(drop=True)
