"""Predicted mean opinion scores (MOS) of speech, one column per predictor.

- "utmos": UTMOS22 strong learner (the VoiceMOS 2022 system; utmos-pytorch,
  a fairseq-free port validated against the original), column `utmos`. Its
  weights (`utmos_state_dict.pt`) come from a file, a folder holding it, or a
  hub repo already in `model_cache.cache_dirs(model_dir)["huggingface"]`;
  nothing is downloaded while scoring.
- "dnsmos": DNSMOS P.835 (signal, background, overall) and P.808 (speechmos,
  whose ONNX models ship in the wheel), columns `dnsmos_sig`, `dnsmos_bak`,
  `dnsmos_ovrl`, `dnsmos_p808`.
- "distillmos": DistillMOS (weights in the wheel), column `distillmos`.

`load_predictors(names, ...)` returns the predictors that loaded and, for
each one that did not, the reason; its columns then stay empty.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.runtime.model_cache import UTMOS_MODEL, cache_dirs, is_local
from workflow_scripts.scoring.dnsmos import WindowedDNSMOS

log = logging.getLogger(__name__)

UTMOS_HUB_REPO = UTMOS_MODEL
UTMOS_WEIGHTS_FILE = "utmos_state_dict.pt"


class MOSUnavailable(RuntimeError):
    """A MOS predictor cannot be used here (package or weights missing)."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _import(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MOSUnavailable(f"{package} is not installed ({exc})") from exc


def resolve_utmos_weights(source: str, model_dir: str | os.PathLike) -> Path:
    """The UTMOS state-dict file for `source`: a file, a folder with utmos_state_dict.pt, or a hub
    repo id looked up in the Hugging Face cache under `model_dir` (never downloaded here)."""
    if is_local(source):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / UTMOS_WEIGHTS_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path.parent}: no {UTMOS_WEIGHTS_FILE} in the UTMOS model folder")
        return path
    if "/" not in source or source.endswith(".pt"):
        raise FileNotFoundError(f"{source}: UTMOS weights file or folder not found")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub_cache = cache_dirs(model_dir)["huggingface"] / "hub"
    try:
        return Path(hf_hub_download(source, UTMOS_WEIGHTS_FILE, cache_dir=str(hub_cache),
                                    local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        raise MOSUnavailable(
            f"UTMOS weights not available offline: {source}/{UTMOS_WEIGHTS_FILE} is not in {hub_cache} "
            f"(no download is attempted while scoring; fetch it into that cache, or pass the file)"
        ) from exc


class UTMOSPredictor:
    """UTMOS22 strong on 16 kHz audio, one clip at a time (padding would shift the scores)."""

    name = "utmos"
    uses_gpu = True  # on the job's device
    columns = ("utmos",)

    def __init__(self, source: str = UTMOS_HUB_REPO, model_dir: str | os.PathLike = "models",
                 device: str = "cpu") -> None:
        import torch

        _import("utmos_pytorch", "utmos-pytorch")
        from utmos_pytorch import UTMOSScoreTorch
        from utmos_pytorch.utmos_torch import UTMOSModel

        weights = resolve_utmos_weights(source, model_dir)
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        with torch.device("meta"):
            expected = set(UTMOSModel().state_dict())
        missing = sorted(expected - set(state))
        if missing:  # UTMOSScoreTorch loads with strict=False: check the keys here
            raise ValueError(f"{weights}: not a UTMOS22 state dict ({len(missing)} of {len(expected)} "
                             f"parameters missing, e.g. {missing[0]})")
        del state
        self.scorer = UTMOSScoreTorch(ckpt_path=str(weights), device=device)
        self.device = device
        self.model_name = f"utmos22-strong (utmos-pytorch {_version('utmos-pytorch')}, {weights})"

    def predict(self, audios: list[np.ndarray], progress: bool = True) -> dict[str, list[float]]:
        import torch

        scores = []
        with torch.no_grad():
            for audio in tqdm(audios, desc=f"MOS {self.name}", unit="utt", disable=not progress):
                wav = torch.from_numpy(np.asarray(audio, dtype=np.float32)).to(self.device)
                scores.append(float(self.scorer.score(wav[None])[0]))
        return {"utmos": scores}


class DNSMOSPredictor:
    """DNSMOS P.835 and P.808 (ONNX, CPU) as speechmos scores 16 kHz arrays, each clip's shared
    convolutions computed once (scoring/dnsmos.py)."""

    name = "dnsmos"
    columns = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
    uses_gpu = False  # onnxruntime on the CPU: score_tts runs it after giving the GPU back

    def __init__(self, device: str = "cpu", threads: int = 0) -> None:
        """`threads`: onnxruntime's threads per model (0: its default, one per core)."""
        dnsmos = _import("speechmos.dnsmos", "speechmos (with onnxruntime and librosa)")
        models = Path(dnsmos.__file__).parent
        primary, p808 = models / "dnsmos_models" / "sig_bak_ovr.onnx", models / "dnsmos_models" / "model_v8.onnx"
        for path in (primary, p808):
            if not path.is_file():
                raise MOSUnavailable(f"DNSMOS model {path} missing from the speechmos package")
        options = None
        if threads:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.model = WindowedDNSMOS(str(primary), str(p808), options)
        except ImportError as exc:  # onnx, which cuts the P.835 model in two (scoring/dnsmos.py)
            raise MOSUnavailable(f"onnx is not installed ({exc})") from exc
        self.model_name = f"dnsmos p835 sig_bak_ovr + p808 (speechmos {_version('speechmos')})"

    def predict(self, audios: list[np.ndarray], progress: bool = True) -> dict[str, list[float]]:
        out = {column: [] for column in self.columns}
        for audio in tqdm(audios, desc=f"MOS {self.name}", unit="utt", disable=not progress):
            # speechmos refuses samples outside [-1, 1]
            scores = self.model(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0))
            for column, key in zip(self.columns, ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")):
                out[column].append(float(scores[key]))
        return out


class DistillMOSPredictor:
    """DistillMOS (a small CNN-transformer distilled from XLS-R SQA) on 16 kHz audio, per clip."""

    name = "distillmos"
    uses_gpu = True  # on the job's device
    columns = ("distillmos",)

    def __init__(self, device: str = "cpu") -> None:
        _import("distillmos", "distillmos")
        from distillmos import ConvTransformerSQAModel

        with contextlib.redirect_stdout(sys.stderr):  # it prints where its weights came from
            self.model = ConvTransformerSQAModel().eval().to(device)
        self.device = device
        self.model_name = f"distillmos v7 (distillmos {_version('distillmos')})"

    def predict(self, audios: list[np.ndarray], progress: bool = True) -> dict[str, list[float]]:
        import torch

        scores = []
        with torch.no_grad():
            for audio in tqdm(audios, desc=f"MOS {self.name}", unit="utt", disable=not progress):
                wav = torch.from_numpy(np.asarray(audio, dtype=np.float32)).to(self.device)
                scores.append(float(self.model(wav[None]).reshape(-1)[0]))
        return {"distillmos": scores}


PREDICTORS = {"utmos": UTMOSPredictor, "dnsmos": DNSMOSPredictor, "distillmos": DistillMOSPredictor}
MOS_CHOICES = tuple(PREDICTORS)


def load_predictors(names: list[str], utmos_source: str = UTMOS_HUB_REPO,
                    model_dir: str | os.PathLike = "models", device: str = "cpu",
                    onnx_threads: int = 0) -> tuple[dict, dict]:
    """({name: predictor}, {name: reason it is unavailable}) for the predictors in `names`;
    `onnx_threads`: DNSMOS's threads per ONNX model (0: onnxruntime's default).

    A missing package or missing hub weights is a reason; a weights file or
    folder named explicitly that is missing or wrong is an error.
    """
    unknown = [name for name in names if name not in PREDICTORS]
    if unknown:
        raise ValueError(f"unknown MOS predictor(s) {', '.join(unknown)}; choose from {', '.join(MOS_CHOICES)}")
    predictors, reasons = {}, {}
    for name in dict.fromkeys(names):
        try:
            if name == "utmos":
                predictors[name] = UTMOSPredictor(utmos_source, model_dir, device)
            elif name == "dnsmos":
                predictors[name] = DNSMOSPredictor(device, onnx_threads)
            else:
                predictors[name] = PREDICTORS[name](device)
        except MOSUnavailable as exc:
            reasons[name] = str(exc)
            log.warning("%s unavailable: %s", name, exc)
    return predictors, reasons
