"""DNSMOS P.835 and P.808 as speechmos scores a clip, the P.835 model's full-resolution layers
computed once over the clip instead of once per window.

speechmos (after Microsoft's `dnsmos_local.py`) tiles a clip shorter than 9.01 s by
doubling it until it is at least that long, then scores 9.01 s windows at a 1 s hop with
both models and averages the windows. A 4 s clip is tiled to 16 s and scored in 7
overlapping windows. The P.835 model (`sig_bak_ovr.onnx`) spends nearly all of its time in
four 3x3 convolutions over the log-power spectrogram at full resolution (frames of 320
samples at a 160-sample hop, 161 bins), before its first 2x2 max-pooling. Those layers
are local in time: a window's pooled features are the pooled features of the whole tiled
clip at the window's frames (its 1 s hop is 100 frames, 50 pooled rows), except for the
first and last few frames, where the window's own zero padding reaches in. So the model
is cut at that pooling into a front (spectrogram and the four layers) and a back (the
rest); the front runs once over the tiled clip, its pooled rows are sliced per window,
the rows at each window's edges are recomputed from the window's own first and last
frames, and the back runs per window. Windows are cut as speechmos cuts them: it skips a
window whose float end, (k + 9.01) * 16000, rounds down a sample short. The scores equal
speechmos's to float rounding (tests/scoring/test_dnsmos.py); the P.808 model and its mel
spectrogram are speechmos's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from workflow_scripts.files.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

WINDOW_SECONDS = 9.01  # speechmos.dnsmos.INPUT_LENGTH
FRAME, HOP = 320, 160  # the model's STFT frames: 100 to the 1 s window hop, 50 pooled rows
FRAMES_INPUT = "mos_estimator_logpow/concat:0"  # [N, frames, 320]: the frames the graph cut
POOLED = "mos_estimator_logpow/conv2d_3/Relu:0_pooling0"  # [N, 32, frames / 2, 80]
OUTPUT = "Identity:0"  # [N, 3]: raw signal, background, overall
# Rows of a window's pooled features that its zero padding reaches: 4 layers of 3x3 reach
# 4 frames (2 pooled rows) in; 8 pooled rows are recomputed each side, from 24 frames.
EDGE_ROWS, EDGE_FRAMES = 8, 24
# The two halves are kept in a folder (named by this variable, else the temp folder's
# genda-pse-dnsmos/), under a name made of the model file's hash and SPLIT_VERSION: later
# processes read them and need not import onnx (most of a second). Raise SPLIT_VERSION when
# `_split` changes.
CACHE_ENV = "GENDA_DNSMOS_CACHE"
SPLIT_VERSION = 1


def _split(model_path: str) -> tuple[bytes, bytes]:
    """The P.835 model cut at its first pooling: (front, back) serialised, the frame axes free."""
    import onnx
    from onnx import shape_inference, utils

    model = shape_inference.infer_shapes(onnx.load(model_path))
    parts = []
    for inputs, outputs in (([FRAMES_INPUT], [POOLED]), ([POOLED], [OUTPUT])):
        part = utils.Extractor(model).extract_model(inputs, outputs)
        del part.graph.value_info[:]  # the inner shapes were inferred for the 9.01 s window
        for tensor in list(part.graph.input) + list(part.graph.output):
            dims = tensor.type.tensor_type.shape.dim
            if len(dims) > 2:  # the batch axis is free already; the frame axis made free too
                dims[1 if tensor.name == FRAMES_INPUT else 2].dim_param = "frames"
        parts.append(part.SerializeToString())
    return parts[0], parts[1]


def split_models(model_path: str) -> tuple[bytes, bytes]:
    """`_split(model_path)`, read from the cache folder where an earlier process left it."""
    key = hashlib.sha256(Path(model_path).read_bytes() + f"split {SPLIT_VERSION}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "genda-pse-dnsmos") / key
    paths = (folder / "front.onnx", folder / "back.onnx")
    if all(path.is_file() for path in paths):
        return paths[0].read_bytes(), paths[1].read_bytes()
    parts = _split(model_path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, part in zip(paths, parts):  # whole files only: written aside, then renamed
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_bytes(part)
            os.replace(partial, path)
    except OSError as exc:
        log.warning("DNSMOS halves not kept in %s (%s): the next process cuts the model again", folder, exc)
    return parts


def frames(audio: np.ndarray) -> np.ndarray:
    """[1, n, 320] frames of 320 samples at a 160-sample hop, as the model's graph cuts them."""
    count = (len(audio) - FRAME) // HOP + 1
    index = np.arange(count)[:, None] * HOP + np.arange(FRAME)[None]
    return np.ascontiguousarray(audio[index][None], dtype=np.float32)


def windows(audio: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(the clip tiled as speechmos tiles it, the first sample of each window speechmos scores)."""
    length = int(WINDOW_SECONDS * SAMPLE_RATE)
    while len(audio) < length:
        audio = np.append(audio, audio)
    count = int(np.floor(len(audio) / SAMPLE_RATE) - WINDOW_SECONDS) + 1
    # speechmos's slices: where (k + 9.01) * 16000 rounds down a sample short (k = 7-23, 119-...),
    # the window is short and speechmos skips it
    bounds = [(int(k * SAMPLE_RATE), int((k + WINDOW_SECONDS) * SAMPLE_RATE)) for k in range(count)]
    return audio, [start for start, end in bounds if len(audio[start:end]) >= length]


class WindowedDNSMOS:
    """speechmos's `DNSMOS` (its P.808 session, mel spectrogram and polynomial fits) with the
    P.835 model's front run once a clip; `__call__` returns speechmos's dict of the four means."""

    def __init__(self, primary_path: str, p808_path: str, options=None) -> None:
        import onnxruntime
        from speechmos.dnsmos import DNSMOS, INPUT_LENGTH

        if INPUT_LENGTH != WINDOW_SECONDS:
            raise RuntimeError(f"speechmos's window is {INPUT_LENGTH} s, not the {WINDOW_SECONDS} s this code slices")
        # speechmos's methods without its sessions: the whole P.835 model is never run here
        self.reference = DNSMOS.__new__(DNSMOS)
        self.reference.primary_model_path = primary_path
        self.reference.p808_onnx_sess = onnxruntime.InferenceSession(p808_path, options)
        front, back = split_models(primary_path)
        self.front = onnxruntime.InferenceSession(front, options)
        self.back = onnxruntime.InferenceSession(back, options)

    def _front(self, frame_block: np.ndarray) -> np.ndarray:
        return self.front.run(None, {FRAMES_INPUT: frame_block})[0]

    def raw_windows(self, audio: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The P.835 model's raw (sig, bak, ovr) per window [windows, 3], and the windows."""
        audio, starts = windows(audio)
        length = int(WINDOW_SECONDS * SAMPLE_RATE)
        cut = [audio[start: start + length] for start in starts]
        whole = self._front(frames(audio[: starts[-1] + length]))
        raw = []
        for i, (start, window) in enumerate(zip(starts, cut)):
            window_frames = frames(window)
            rows, first = window_frames.shape[1] // 2, start // HOP // 2
            pooled = whole[:, :, first: first + rows].copy()
            if start > 0:  # the first window starts where the clip does, the last ends where it does
                pooled[:, :, :EDGE_ROWS] = self._front(window_frames[:, :EDGE_FRAMES])[:, :, :EDGE_ROWS]
            if i < len(starts) - 1:
                pooled[:, :, rows - EDGE_ROWS:] = self._front(window_frames[:, -EDGE_FRAMES:])[:, :, -EDGE_ROWS:]
            raw.append(self.back.run(None, {POOLED: pooled})[0][0])
        return np.array(raw), cut

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """speechmos's `DNSMOS(audio, 16000, False)` for a 16 kHz array in [-1, 1]."""
        raw, windows = self.raw_windows(np.asarray(audio))
        fitted = np.array([self.reference.get_polyfit_val(*scores, False) for scores in raw])
        p808 = []
        for window in windows:
            mel = np.asarray(self.reference.audio_melspec(audio=window[:-HOP]), dtype=np.float32)[None]
            p808.append(self.reference.p808_onnx_sess.run(None, {"input_1": mel})[0][0][0])
        sig, bak, ovr = fitted.mean(axis=0)
        return {"ovrl_mos": ovr, "sig_mos": sig, "bak_mos": bak, "p808_mos": np.mean(p808)}
