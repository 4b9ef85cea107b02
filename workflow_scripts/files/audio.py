"""Audio I/O at the workflow's edge: 16 kHz mono float32 inside, soundfile on disk.

Every reader checks the file before any heavy work and names it in the error;
every writer writes to a temporary name and renames it when complete, so a
killed job never leaves a file that looks finished. What is written gets the mode
an ordinary write would give (0666 for files and 0777 for folders, less the
umask), so that collaborators sharing a results folder can read it. A write that
fails for want of space (a full disk, a quota) removes its temporary file and is
reported naming the output and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # the files audio_files takes from a folder
CLIP_LEVEL = 0.999  # a sample at |x| >= this counts as clipped
CLIP_WARN_FRACTION = 0.01  # warn when more than this fraction of the samples is clipped
DC_OFFSET_LIMIT = 0.01  # a recording whose mean is further from 0 has its offset removed
# a write failing with one of these is reported as the output's (see not_written)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
log = logging.getLogger(__name__)


class AudioError(ValueError):
    """A problem with an audio file, with the file named in the message."""


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling; a no-op when the rates match."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # slow to import, and most jobs never resample

    g = gcd(int(sr_in), int(sr_out))
    out = resample_poly(audio, sr_out // g, sr_in // g, axis=0)
    return out.astype(np.float32)


def wav_shortfall(path: str | os.PathLike) -> tuple[int, int] | None:
    """(bytes of audio its header promises, bytes the file holds) of a WAV file cut short, else None.

    Reads the RIFF chunk headers only; a data chunk of unknown size (0 or 0xFFFFFFFF, as streaming
    writers leave it) is taken as it is."""
    with open(path, "rb") as wav:
        if wav.read(4) not in (b"RIFF", b"RIFX"):
            return None
        wav.seek(12)
        while len(header := wav.read(8)) == 8:
            size = int.from_bytes(header[4:], "little")
            if header[:4] == b"data":
                present = os.fstat(wav.fileno()).st_size - wav.tell()
                unknown = size in (0, 0xFFFFFFFF)
                return (size, present) if not unknown and present < size else None
            wav.seek(size + (size & 1), os.SEEK_CUR)
    return None


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at `sample_rate`.

    Stereo is averaged to mono (logged); other sample rates are resampled
    (logged); more than 1% of samples at |x| >= 0.999 is logged as clipping.
    Missing, unreadable, empty or non-finite audio raises AudioError.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        audio, sr_in = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if path.suffix.lower() == ".wav" and (shortfall := wav_shortfall(path)):
        promised, present = shortfall
        raise AudioError(
            f"{path}: truncated WAV file: its header promises {promised} bytes of audio, the file holds"
            f" {present} (an incomplete copy or download?)"
        )
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped > CLIP_WARN_FRACTION:
        log.warning("%s: %.1f%% of samples are clipped (|x| >= %g)", path, 100.0 * clipped, CLIP_LEVEL)
    if audio.shape[1] > 1:
        log.warning("%s: %d channels, averaged to mono", path, audio.shape[1])
    audio = audio.mean(axis=1)
    if sr_in != sample_rate:
        log.info("%s: resampled from %d Hz to %d Hz", path, sr_in, sample_rate)
        audio = resample(audio, sr_in, sample_rate)
    return audio.astype(np.float32, copy=False)


def read_checked(path: str | os.PathLike, what: str) -> np.ndarray:
    """read_audio of a recording brought in from outside, which must not be silent; `what` names
    it in the error. A DC offset beyond DC_OFFSET_LIMIT is removed, with a warning."""
    audio = read_audio(path)
    offset = float(np.mean(audio))
    if abs(offset) > DC_OFFSET_LIMIT:
        log.warning("%s: the %s has a DC offset of %.3f of full scale: removed", path, what, offset)
        audio = (audio - offset).astype(np.float32)
    if power(audio) == 0.0:
        raise AudioError(f"{path}: {what} is silent")
    return audio


def audio_files(folder: str | os.PathLike, what: str) -> list[Path]:
    """The audio files directly in `folder`, by name; `what` names the folder in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the {what} folder")
    return files


def process_umask() -> int:
    """The process's file-mode creation mask, read without changing it where Linux reports it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def not_written(path: Path, exc: OSError) -> OSError:
    """The error of an output that could not be written for want of space: it names the output
    (not its temporary name) and the cause, with the same errno."""
    cause = os.strerror(exc.errno) if exc.errno else str(exc)
    return OSError(exc.errno, f"{path}: not written: {cause} (nothing of it was left behind)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary file name beside `path` that becomes `path` only on success. On any
    error the temporary file is removed; a full disk or quota is reported by not_written."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes it private
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            raise not_written(path, exc) from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write `data` to `path` atomically through os.write, so that a write that fails midway
    (a full disk) raises at once and leaves nothing behind."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float32 audio atomically (temporary name, then rename)."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"{path}: expected mono audio, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: refusing to write NaN or Inf samples")
    write_bytes(path, wav_bytes(audio, sample_rate, "FLOAT"))


def wav_bytes(audio: np.ndarray, sample_rate: int, subtype: str) -> memoryview:
    """The bytes of a WAV file of `audio` (encoded in memory: libsndfile writing to disk itself
    would not say which write failed, or why)."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, subtype=subtype, format="WAV")
    return buffer.getbuffer()


PCM16_MAX = 32767 / 32768  # the largest sample 16-bit PCM holds


def write_pcm16(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> int:
    """Write mono audio atomically as 16-bit PCM; samples beyond full scale are clipped (never
    wrapped). Returns how many were clipped, for the caller to report."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"{path}: expected mono audio, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: refusing to write NaN or Inf samples")
    clipped = int(np.count_nonzero((audio > PCM16_MAX) | (audio < -1.0)))
    write_bytes(path, wav_bytes(np.clip(audio, -1.0, PCM16_MAX), sample_rate, "PCM_16"))
    return clipped


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary sibling folder that becomes `path` only on success; on any error it is
    removed, and a full disk or quota is reported by not_written (naming `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp makes it private
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            raise not_written(path, exc) from exc
        raise


@contextlib.contextmanager
def staging_dir(out_dir: str | os.PathLike):
    """A temporary sibling folder of `out_dir` for outputs that are moved into place one by one;
    removed on leaving, whatever is left in it (a full disk or quota reported by not_written)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise not_written(out_dir, exc) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    write_bytes(path, text.encode())


def peak_normalize(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale so that max |x| == peak; silent input is returned unchanged."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    if top == 0.0:
        return audio.astype(np.float32, copy=False)
    return (audio * (peak / top)).astype(np.float32)


def fit_length(signal: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """Tile (cyclically) or crop `signal` to `num_samples`, starting at `offset`."""
    if signal.size == 0:
        raise AudioError("cannot fit an empty signal to a length")
    idx = (np.arange(num_samples) + offset) % signal.size
    return signal[idx]


def power(signal: np.ndarray) -> float:
    return float(np.mean(np.square(signal, dtype=np.float64)))


def scale_to_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Return `noise` scaled so that 10 log10(P_clean / P_noise) == snr_db."""
    noise_power = power(noise)
    if noise_power == 0.0:
        raise AudioError("noise is silent: cannot mix at a given SNR")
    gain = np.sqrt(power(clean) / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (noise * gain).astype(np.float32)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float, offset: int = 0):
    """Mix clean speech with noise (tiled/cropped to length) at `snr_db`.

    Returns (mixture, scaled_noise), both the length of `clean`.
    """
    noise = fit_length(noise, clean.size, offset)
    scaled = scale_to_snr(clean, noise, snr_db)
    return (clean + scaled).astype(np.float32), scaled
