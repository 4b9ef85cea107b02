"""Speech recognition for the word error rate (WER) of synthesized speech.

`load_asr(name, model_dir)` gives a transcriber with a `.name` that goes into
every table beside the WER it produced, so a reader knows which ASR made it:

- "whisper": openai-whisper, only from weights already in `model_dir/whisper`
  (no download is attempted; a missing file is an error naming the folder).
- "pocketsphinx": pocketsphinx with its bundled en-us model (always offline).
- "auto": Whisper when it is installed and its weights are present, else
  pocketsphinx; the reason for the fallback is logged and kept in `.note`.
- "none": no ASR (`load_asr` returns None).

Text is normalised before scoring with Whisper's EnglishTextNormalizer when
whisper is importable, else with `simple_normalize`; `normalizer_name()`
says which.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import numpy as np

from workflow_scripts.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

ASR_CHOICES = ("auto", "whisper", "pocketsphinx", "none")


class ASRUnavailable(RuntimeError):
    """The requested ASR cannot be used here (package or weights missing)."""


class PocketsphinxTranscriber:
    """pocketsphinx 5 with its bundled US English acoustic model, LM and dictionary."""

    name = "pocketsphinx-en-us"

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise ASRUnavailable(f"pocketsphinx is not installed ({exc})") from exc
        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="ERROR")
        self.note = ""

    def transcribe(self, audio: np.ndarray) -> str:
        """Words recognised in 16 kHz mono float audio."""
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


class WhisperTranscriber:
    """openai-whisper from a weights file already in `model_dir/whisper`."""

    def __init__(self, size: str, model_dir: str | os.PathLike, device: str = "cpu") -> None:
        try:
            import whisper
        except ImportError as exc:
            raise ASRUnavailable(f"openai-whisper is not installed ({exc})") from exc
        if size not in whisper._MODELS:
            raise ValueError(f"unknown Whisper model size {size!r}; known: {', '.join(whisper._MODELS)}")
        weights_dir = Path(model_dir) / "whisper"
        weights_file = weights_dir / os.path.basename(whisper._MODELS[size])
        if not weights_file.is_file():
            raise ASRUnavailable(
                f"Whisper {size} weights not found: expected {weights_file.name} in {weights_dir} "
                "(no download is attempted; put the file there to use Whisper)"
            )
        self.model = whisper.load_model(size, device=device, download_root=str(weights_dir))
        self.fp16 = device.startswith("cuda")
        self.name = f"whisper-{size}"
        self.note = ""

    def transcribe(self, audio: np.ndarray) -> str:
        """Greedy English transcription of 16 kHz mono float audio (an array: no ffmpeg needed)."""
        result = self.model.transcribe(
            np.asarray(audio, dtype=np.float32), language="en", fp16=self.fp16,
            temperature=0.0, condition_on_previous_text=False,
        )
        return result["text"].strip()


def load_asr(name: str, model_dir: str | os.PathLike = "models", whisper_size: str = "large-v3",
             device: str = "cpu"):
    """A transcriber for `name` (see the module docstring), or None for "none".

    Raises ASRUnavailable when an explicitly requested ASR (or, for "auto",
    every candidate) cannot be loaded.
    """
    if name not in ASR_CHOICES:
        raise ValueError(f"unknown ASR {name!r}; choose one of {', '.join(ASR_CHOICES)}")
    if name == "none":
        return None
    if name == "whisper":
        return WhisperTranscriber(whisper_size, model_dir, device)
    if name == "pocketsphinx":
        return PocketsphinxTranscriber()
    try:
        return WhisperTranscriber(whisper_size, model_dir, device)
    except ASRUnavailable as exc:
        whisper_reason = str(exc)
    log.info("asr auto: Whisper unavailable (%s); falling back to pocketsphinx", whisper_reason)
    try:
        transcriber = PocketsphinxTranscriber()
    except ASRUnavailable as exc:
        raise ASRUnavailable(f"no ASR available: {whisper_reason}; {exc}") from exc
    transcriber.note = f"auto: Whisper unavailable ({whisper_reason}); used pocketsphinx"
    return transcriber


# ---- text normalisation ----------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell_integer(number: int) -> str:
    """Cardinal English words for 0 <= number < 10**9 ("one hundred twenty three")."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for size, word in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if number >= size:
            high, low = divmod(number, size)
            return spell_integer(high) + " " + word + ("" if low == 0 else " " + spell_integer(low))
    raise AssertionError("unreachable")


_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def spell_ordinal(number: int) -> str:
    """Ordinal English words ("twenty first")."""
    *head, last = spell_integer(number).split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _spell_ordinal(match: re.Match) -> str:
    return f" {spell_ordinal(int(match.group(1)))} "


def _spell_number(match: re.Match) -> str:
    digits = match.group(0).replace(",", "")
    whole, _, fraction = digits.partition(".")
    if len(whole) > 9:
        return " ".join(_ONES[int(d)] for d in digits if d.isdigit())
    words = spell_integer(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {words} "


def simple_normalize(text: str) -> str:
    """Lowercase; numbers spelled out ("21" cardinal, "21st" ordinal); punctuation, apostrophes removed."""
    text = text.lower().replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"\b(\d{1,9})(?:st|nd|rd|th)\b", _spell_ordinal, text)
    text = re.sub(r"\d[\d,]*(?:\.\d+)?", _spell_number, text)
    text = text.replace("'", "").replace("\u2019", "")
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return " ".join(text.split())


def normalizer_name() -> str:
    """Which normaliser `normalize_text` uses here."""
    return "whisper-english" if _whisper_normalizer() is not None else "simple"


@functools.cache
def _whisper_normalizer():
    """Whisper's EnglishTextNormalizer, or None when whisper is not installed."""
    try:
        from whisper.normalizers import EnglishTextNormalizer
    except ImportError:
        return None
    return EnglishTextNormalizer()


def normalize_text(text: str) -> str:
    """Text as compared for WER (Whisper's English normaliser when available)."""
    normalizer = _whisper_normalizer()
    if normalizer is not None:
        return " ".join(normalizer(text).split())
    return simple_normalize(text)


# ---- WER ------------------------------------------------------------------

def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count) after normalisation."""
    import jiwer

    reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    if not reference:
        raise ValueError("reference text is empty after normalisation")
    if not hypothesis:
        return len(reference.split()), len(reference.split())
    out = jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions, len(reference.split())
