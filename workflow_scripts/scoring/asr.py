"""Speech recognition for the word error rate (WER) of synthesized speech.

`load_asr(name, model_dir)` gives a transcriber with a `.name` that goes into
every table beside the WER it produced, so a reader knows which ASR made it:

- "whisper": openai-whisper (the challenge used large-v3). `whisper_model` is
  a size, read from `model_cache.cache_dirs(model_dir)["whisper"]` (the
  download_root of `whisper.load_model`) after its SHA256 is checked, or the
  path of a checkpoint file, loaded as it is. No download is attempted: a
  missing or corrupt file is an error naming the folder.
- "pocketsphinx": pocketsphinx with its bundled en-us model (always offline).
- "auto": Whisper when its weights are present (or a checkpoint file is
  given), else pocketsphinx; the reason for the fallback is kept in `.note`.
- "none": no ASR (`load_asr` returns None).

Whisper transcribes arrays (no FFmpeg), in English. Clips of up to 30 s are
decoded in batches exactly as `whisper.transcribe` decodes its first window
(greedy, with timestamps); a clip for which `transcribe` would do more (a
temperature fallback, a second window, audio past 30 s) is handed to
`transcribe` itself, so the text is the same as one `transcribe` call per file.

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

from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.runtime.model_cache import WHISPER_MODEL, cache_dirs, file_sha256

log = logging.getLogger(__name__)

ASR_CHOICES = ("auto", "whisper", "pocketsphinx", "none")
# 30 s windows decoded together; each holds its cross-attention keys and values (large-v3: 1500 frames
# x 1280 x 2 x 32 layers in fp16, 0.25 GB). Speed per batch size: bench/RESULTS.md, "TTS scoring speed"
WHISPER_BATCH_SIZE = 32
# whisper.transcribe's defaults: the temperatures tried in turn and the thresholds that trigger the next
WHISPER_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6


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
        self.batch_size = 1

    def transcribe(self, audio: np.ndarray) -> str:
        """Words recognised in 16 kHz mono float audio."""
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[str]:
        return [self.transcribe(audio) for audio in audios]


def whisper_weights_file(size: str, model_dir: str | os.PathLike) -> Path:
    """Where `whisper.load_model(size, download_root=...)` keeps the weights of `size`."""
    import whisper

    if size not in whisper._MODELS:
        raise ValueError(f"unknown Whisper model size {size!r}; known: {', '.join(whisper._MODELS)}, "
                         "or the path of a checkpoint file")
    return cache_dirs(model_dir)["whisper"] / os.path.basename(whisper._MODELS[size])


class WhisperTranscriber:
    """openai-whisper from a released size in the model cache or from a checkpoint file.

    `temperature_fallback=False` keeps only the greedy pass (temperature 0),
    as `transcribe(..., temperature=0.0)` would.
    """

    def __init__(self, model: str, model_dir: str | os.PathLike = "models", device: str = "cpu",
                 batch_size: int = WHISPER_BATCH_SIZE, temperature_fallback: bool = True) -> None:
        try:
            import whisper
        except ImportError as exc:
            raise ASRUnavailable(f"openai-whisper is not installed ({exc})") from exc
        if batch_size < 1:
            raise ValueError(f"Whisper batch size must be >= 1, got {batch_size}")
        if Path(model).expanduser().is_file():  # a local checkpoint: loaded as it is, never re-downloaded
            checkpoint = Path(model).expanduser()
            self.name = f"whisper-{checkpoint.stem}"
            self.model = whisper.load_model(str(checkpoint), device=device)
            self.note = f"checkpoint {checkpoint}"
        else:
            if os.sep in str(model) or str(model).endswith(".pt"):
                raise FileNotFoundError(f"{model}: Whisper checkpoint file not found")
            checkpoint = whisper_weights_file(model, model_dir)
            if not checkpoint.is_file():
                raise ASRUnavailable(
                    f"Whisper {model} weights not found: expected {checkpoint.name} in {checkpoint.parent} "
                    "(no download is attempted; put the file there to use Whisper)"
                )
            expected_sha256 = whisper._MODELS[model].split("/")[-2]
            if file_sha256(checkpoint) != expected_sha256:
                raise ASRUnavailable(
                    f"{checkpoint}: SHA256 does not match the released Whisper {model} weights "
                    "(no download is attempted; replace the file, or pass its path as the model)"
                )
            self.name = f"whisper-{model}"
            self.model = whisper.load_model(str(checkpoint), device=device)
            self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[model])
            self.note = ""
        self.model.eval()
        self.device = device
        self.batch_size = batch_size
        self.fp16 = str(device).startswith("cuda")
        self.temperatures = WHISPER_TEMPERATURES if temperature_fallback else (0.0,)
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages, language="en",
            task="transcribe")
        self.options = whisper.DecodingOptions(task="transcribe", language="en", temperature=0.0,
                                               fp16=self.fp16)
        self.calls_to_transcribe = 0  # clips that needed whisper.transcribe after the batched pass

    def transcribe(self, audio: np.ndarray) -> str:
        """English transcription of 16 kHz mono float audio, as `whisper.transcribe` gives it."""
        self.calls_to_transcribe += 1
        result = self.model.transcribe(
            np.asarray(audio, dtype=np.float32), language="en", task="transcribe", fp16=self.fp16,
            temperature=self.temperatures, compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold=LOGPROB_THRESHOLD, no_speech_threshold=NO_SPEECH_THRESHOLD, verbose=None,
        )
        return result["text"].strip()

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[str]:
        """`transcribe` of each clip; clips of up to 30 s are decoded together."""
        import torch
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        texts: list[str | None] = [None] * len(audios)
        short = [i for i, audio in enumerate(audios) if audio.size <= N_SAMPLES]
        dtype = torch.float16 if self.fp16 else torch.float32
        for start in range(0, len(short), self.batch_size):
            indices = short[start:start + self.batch_size]
            mels = []
            for i in indices:
                # as transcribe: the log-mel of the clip with 30 s of zeros after it, cut to the
                # clip's frames and padded to one window
                mel = log_mel_spectrogram(torch.from_numpy(np.asarray(audios[i], dtype=np.float32)),
                                          self.model.dims.n_mels, padding=N_SAMPLES, device=self.device)
                content_frames = mel.shape[-1] - N_FRAMES
                mels.append(pad_or_trim(mel[:, :min(N_FRAMES, content_frames)], N_FRAMES))
            with torch.no_grad():
                results = self.model.decode(torch.stack(mels).to(dtype), self.options)
            for i, result in zip(indices, results):
                texts[i] = self._first_window_text(result)
        return [text if text is not None else self.transcribe(audio) for text, audio in zip(texts, audios)]

    def _first_window_text(self, result) -> str | None:
        """The text `transcribe` makes of a clip whose only window decoded to `result`,
        or None when `transcribe` would decode again (temperature fallback, a later window)."""
        import torch

        needs_fallback = (result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
                          or result.avg_logprob < LOGPROB_THRESHOLD)
        silence = result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD
        if needs_fallback and not silence and len(self.temperatures) > 1:
            return None
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and not result.avg_logprob > LOGPROB_THRESHOLD:
            return ""  # transcribe skips the window as silence
        tokens = torch.tensor(result.tokens, dtype=torch.long)
        is_timestamp = tokens.ge(self.tokenizer.timestamp_begin)
        single_timestamp_ending = is_timestamp[-2:].tolist() == [False, True]
        consecutive = (torch.where(is_timestamp[:-1] & is_timestamp[1:])[0] + 1).tolist()
        if not consecutive:
            return self.tokenizer.decode(result.tokens).strip()
        if not single_timestamp_ending:
            return None  # transcribe would seek back to the last timestamp and decode again
        kept, last = [], 0
        for end in consecutive + [len(tokens)]:
            segment = tokens[last:end]
            if segment[0] != segment[-1]:  # an instantaneous segment is cleared
                kept.extend(segment.tolist())
            last = end
        return self.tokenizer.decode(kept).strip()


def load_asr(name: str, model_dir: str | os.PathLike = "models", whisper_model: str = WHISPER_MODEL,
             device: str = "cpu", temperature_fallback: bool = True):
    """A transcriber for `name` (see the module docstring), or None for "none".

    Raises ASRUnavailable when an explicitly requested ASR (or, for "auto",
    every candidate) cannot be loaded.
    """
    if name not in ASR_CHOICES:
        raise ValueError(f"unknown ASR {name!r}; choose one of {', '.join(ASR_CHOICES)}")
    if name == "none":
        return None
    if name == "whisper":
        return WhisperTranscriber(whisper_model, model_dir, device, temperature_fallback=temperature_fallback)
    if name == "pocketsphinx":
        return PocketsphinxTranscriber()
    try:
        return WhisperTranscriber(whisper_model, model_dir, device, temperature_fallback=temperature_fallback)
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
