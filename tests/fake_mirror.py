"""A small stand-in for the external resources, with their real layouts, for tests.

Builds, in a folder, the archives the GenDA 2025 configuration downloads, each with a
few files: the challenge release (a GitHub-style zip with one top folder) from the
local copy of the release (../shared/genda25: speakers F0 and VirtualM3), LibriTTS
test-clean (speaker 237 = F0: some utterances read F0's challenge sentences, one is
the enrollment clip itself, the rest are held out; audio cut from F0's enrollment
clip), MUSAN (noise/sound-bible files named in the noise sets, noise/free-sound,
and a music file that a `members` filter must skip; synthetic noise) and two
LibriSpeech subsets (synthetic speech-like audio, FLAC). `resources_config` gives
the `resources` section of a config with file:// URLs and the archives' checksums.

    python tests/fake_mirror.py OUT_DIR    # builds the mirror and prints the config section
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

CHALLENGE_TOP = "GenDA-Challenge-25-ZSTTS-PSE-5391dc3"
SPEAKERS = {"F0": "237", "VirtualM3": None}
LIBRITTS_RATE = 24000
SENTENCE_READINGS = 8  # LibriTTS utterances of 237 that read F0's first challenge sentences
HELD_OUT = 12  # other utterances of 237
FREE_SOUND = 5
ARCHIVES = {
    "genda_challenge": "5391dc3.zip",
    "libritts_test_clean": "test-clean.tar.gz",
    "musan": "musan.tar.gz",
    "librispeech_train_clean_100": "train-clean-100.tar.gz",
    "librispeech_train_clean_360": "train-clean-360.tar.gz",
}
LIBRISPEECH = {"librispeech_train_clean_100": ("train-clean-100", ["19", "237"]),
               "librispeech_train_clean_360": ("train-clean-360", ["100"])}


def wav_bytes(audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def noise(rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """Coloured noise with a hum: not silent, not speech."""
    n = int(seconds * rate)
    white = rng.standard_normal(n)
    coloured = np.convolve(white, np.ones(rng.integers(1, 8)) / 4, mode="same")
    hum = 0.3 * np.sin(2 * np.pi * rng.uniform(50, 400) * np.arange(n) / rate)
    return (0.1 * (coloured + hum)).astype(np.float32)


def speechlike(rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(90, 220) * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None)
    return (0.2 * tone * envelope).astype(np.float32)


def add_tar(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def sums(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def build_challenge(genda25: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{CHALLENGE_TOP}/README.md", "GenDA 2025 challenge (test stand-in)\n")
        for name in ("synth_sentences.txt", "synth_sentences_additional.txt", "spk_noise_set.json"):
            zf.write(genda25 / "text" / name, f"{CHALLENGE_TOP}/data/{name}")
        for speaker in SPEAKERS:
            zf.write(genda25 / "enrollment" / f"{speaker}_ref.wav",
                     f"{CHALLENGE_TOP}/data/{speaker}/reference_wav/{speaker}_ref.wav")
            for wav in sorted((genda25 / "test_mixtures" / speaker).glob("*.wav")):
                zf.write(wav, f"{CHALLENGE_TOP}/data/{speaker}/mixed_wavs/{wav.name}")
        for size, stamp in (("tiny", "Dec19_03-47-42"), ("small", "Dec15_14-28-33")):
            zf.write(genda25 / "checkpoints" / f"convtasnet_{size}.pt",
                     f"{CHALLENGE_TOP}/checkpoints/generalists/{stamp}_convtasnet_{size}.pt")


def f0_sentences(genda25: Path) -> list[str]:
    lines = (genda25 / "text" / "synth_sentences.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines if line.startswith("F0/")]


def build_libritts(genda25: Path, out: Path, rng: np.random.Generator) -> dict:
    """LibriTTS/test-clean/237 (F0) and a distractor speaker; returns what was put where."""
    enrollment, rate = sf.read(genda25 / "enrollment" / "F0_ref.wav", dtype="float32")
    assert rate == LIBRITTS_RATE
    sentences = f0_sentences(genda25)
    layout = {"sentence": [], "held_out": [], "enrollment": []}
    with tarfile.open(out, "w:gz") as tf:
        add_tar(tf, "LibriTTS/LICENSE.txt", b"CC BY 4.0 (test stand-in)\n")

        def utterance(speaker: str, chapter: str, index: int, audio: np.ndarray, text: str) -> str:
            utt = f"{speaker}_{chapter}_{index:06d}_000000"
            folder = f"LibriTTS/test-clean/{speaker}/{chapter}"
            add_tar(tf, f"{folder}/{utt}.wav", wav_bytes(audio, LIBRITTS_RATE))
            add_tar(tf, f"{folder}/{utt}.original.txt", text.encode())
            add_tar(tf, f"{folder}/{utt}.normalized.txt", text.replace('"', "").encode())
            return utt

        def crop() -> np.ndarray:
            length = int(rng.uniform(1.2, 2.5) * LIBRITTS_RATE)
            start = int(rng.integers(0, enrollment.size - length))
            return enrollment[start:start + length] * rng.uniform(0.6, 1.0)

        index = 0
        # readings of sentences 0..7, in shuffled order, with the punctuation LibriTTS may differ in
        for sentence_index in rng.permutation(SENTENCE_READINGS):
            text = sentences[sentence_index].upper() if sentence_index % 2 else sentences[sentence_index] + " "
            layout["sentence"].append(utterance("237", "134493", index, crop(), text))
            index += 1
        for i in range(HELD_OUT):
            layout["held_out"].append(utterance("237", "126133", index, crop(), f"Held out utterance number {i}."))
            index += 1
        layout["enrollment"].append(utterance("237", "126133", index, enrollment, "The enrollment clip itself."))
        utterance("1089", "134686", 0, crop(), "Another speaker of test clean.")
    return layout


def build_musan(genda25: Path, out: Path, rng: np.random.Generator) -> None:
    noise_sets = json.loads((genda25 / "text" / "spk_noise_set.json").read_text())
    names = sorted({name for speaker in SPEAKERS for name in noise_sets[speaker]})
    with tarfile.open(out, "w:gz") as tf:
        add_tar(tf, "musan/README", b"MUSAN (test stand-in)\n")
        for kind in ("sound-bible", "free-sound"):
            add_tar(tf, f"musan/noise/{kind}/ANNOTATIONS", b"file\tsource\n")
            add_tar(tf, f"musan/noise/{kind}/LICENSE", b"CC\n")
        for name in names:
            add_tar(tf, f"musan/noise/sound-bible/{name}", wav_bytes(noise(rng, rng.uniform(3.0, 6.0)), 16000))
        for i in range(FREE_SOUND):
            add_tar(tf, f"musan/noise/free-sound/noise-free-sound-{i:04d}.wav",
                    wav_bytes(noise(rng, rng.uniform(4.0, 6.0)), 16000))
        add_tar(tf, "musan/music/fma/music-fma-0000.wav", wav_bytes(noise(rng, 1.0), 16000))


def build_librispeech(out: Path, subset: str, speakers: list[str], rng: np.random.Generator) -> None:
    with tarfile.open(out, "w:gz") as tf:
        add_tar(tf, "LibriSpeech/README.TXT", b"LibriSpeech (test stand-in)\n")
        for speaker in speakers:
            chapter = str(100 + int(speaker) % 97)
            lines = []
            for n in range(3):
                utt = f"{speaker}-{chapter}-{n:04d}"
                add_tar(tf, f"LibriSpeech/{subset}/{speaker}/{chapter}/{utt}.flac",
                        wav_bytes(speechlike(rng, rng.uniform(1.0, 2.0)), 16000, fmt="FLAC"))
                lines.append(f"{utt} SPEECH NUMBER {n} OF SPEAKER {speaker}")
            add_tar(tf, f"LibriSpeech/{subset}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt",
                    ("\n".join(lines) + "\n").encode())


def build_mirror(out_dir: Path, genda25: Path, seed: int = 0) -> dict:
    """Build every archive in `out_dir`; returns {"libritts_layout": ..., "sums": {name: sums}}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    build_challenge(genda25, out_dir / ARCHIVES["genda_challenge"])
    layout = build_libritts(genda25, out_dir / ARCHIVES["libritts_test_clean"], rng)
    build_musan(genda25, out_dir / ARCHIVES["musan"], rng)
    for name, (subset, speakers) in LIBRISPEECH.items():
        build_librispeech(out_dir / ARCHIVES[name], subset, speakers, rng)
    return {"libritts_layout": layout, "sums": {name: sums(out_dir / f) for name, f in ARCHIVES.items()}}


def resources_config(out_dir: Path, info: dict) -> dict:
    """The config's `resources` section for the mirror: file:// URLs and the published-style sums
    (sha256 for LibriTTS and LibriSpeech, md5 for MUSAN, none for the challenge's GitHub zip)."""
    resources = {}
    for name, file in ARCHIVES.items():
        entry = {"url": (out_dir / file).resolve().as_uri()}
        if name == "genda_challenge":
            entry.update(sha256=None, strip_top_folder=True)
        elif name == "musan":
            entry.update(md5=info["sums"][name]["md5"], members=["musan/noise"])
        else:
            entry["sha256"] = info["sums"][name]["sha256"]
        resources[name] = entry
    return resources


if __name__ == "__main__":
    out = Path(sys.argv[1])
    genda25 = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "shared" / "genda25"
    built = build_mirror(out, genda25)
    print(yaml.safe_dump({"resources": resources_config(out, built)}, sort_keys=False))
