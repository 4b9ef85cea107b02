"""Speaker x-vectors from speechbrain's spkrec-xvect-voxceleb, as SpeechT5 is conditioned on them.

SpeechT5's text-to-speech model was trained on 512-dimensional x-vectors of
this encoder (TDNN on 24 log-mel bands, VoxCeleb speakers). As in the GenDA
challenge's SpeechT5 script, a clip's x-vector is `encode_batch` of its 16 kHz
waveform, L2-normalised. Here every clip is first peak-normalised, and the
clips are embedded in padded batches with their relative lengths, so that
padding is left out of the features' normalisation and of the statistics
pooling.

`source` is a hub id, kept in `model_cache.speechbrain_savedir(model_dir,
source)` (filled once by `download_models`; a filled folder is read with no
network), or a local folder with `hyperparams.yaml` and the checkpoints,
which is read in place: nothing is linked, copied or fetched.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from workflow_scripts.runtime import model_cache
from workflow_scripts.files.audio import peak_normalize

log = logging.getLogger(__name__)

DEFAULT_SOURCE = model_cache.XVECTOR_MODEL
EMBEDDING_DIM = 512  # of the hub model; SpeechT5's speaker_embedding_dim
HPARAMS_FILE = "hyperparams.yaml"
# the hub model's hyperparams.yaml names its checkpoints as <pretrained_path>/<file>, with
# pretrained_path set to the hub id: a local copy is pointed at its own folder instead
_PRETRAINED_PATH_KEY = re.compile(r"^pretrained_path\s*:", re.MULTILINE)


def network_allowed() -> bool:
    """False when HF_HUB_OFFLINE says the hub must not be reached."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}


def load_classifier(source: str, model_dir: str | os.PathLike = "models", device: str = "cpu",
                    download_only: bool = False):
    """speechbrain's EncoderClassifier for `source` (hub id or local folder), in eval mode on `device`.

    A local folder is loaded where it is (LocalStrategy.NO_LINK, network off).
    A hub id is read from its savedir under `model_dir`; files missing there
    are taken from the Hugging Face cache under `model_dir` (fetched into it
    first unless HF_HUB_OFFLINE) and copied into the savedir, not linked, so
    that the savedir alone suffices. With `download_only`, only the files are
    fetched and None is returned.
    """
    from speechbrain.inference.speaker import EncoderClassifier
    from speechbrain.utils.fetching import FetchConfig, LocalStrategy

    if device == "cuda":  # speechbrain wants the index
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    run_opts = {"device": device}
    if model_cache.is_local(source):
        folder = Path(source).expanduser().resolve()
        hparams_yaml = folder / HPARAMS_FILE
        if not hparams_yaml.is_file():
            raise FileNotFoundError(f"{folder}: not a speechbrain model folder (no {HPARAMS_FILE})")
        overrides = {}
        if _PRETRAINED_PATH_KEY.search(hparams_yaml.read_text(encoding="utf-8")):
            overrides["pretrained_path"] = str(folder)
        return EncoderClassifier.from_hparams(
            source=str(folder), savedir=None, overrides=overrides, download_only=download_only,
            local_strategy=LocalStrategy.NO_LINK, fetch_config=FetchConfig(allow_network=False),
            run_opts=run_opts,
        )
    savedir = model_cache.speechbrain_savedir(model_dir, source)
    allow_network = network_allowed()
    fetch_config = FetchConfig(allow_network=allow_network, huggingface_cache_dir=str(
        model_cache.cache_dirs(model_dir)["huggingface"] / "hub"))
    try:
        return EncoderClassifier.from_hparams(
            source=source, savedir=str(savedir), download_only=download_only,
            local_strategy=LocalStrategy.COPY, fetch_config=fetch_config, run_opts=run_opts,
        )
    except Exception as exc:
        why = "network access is off (HF_HUB_OFFLINE)" if not allow_network else "it could not be fetched"
        raise RuntimeError(
            f"speechbrain model {source!r} is not complete in {savedir} and {why} "
            f"({type(exc).__name__}: {exc}); fill the model folder with "
            f"`python -m workflow_scripts.download_models` where there is internet, "
            f"or name a local model folder"
        ) from exc


class XVectorEncoder:
    """L2-normalised x-vectors of 16 kHz mono float32 audio, shape (n, 512)."""

    def __init__(self, source: str = DEFAULT_SOURCE, model_dir: str | os.PathLike = "models",
                 device: str = "cpu", batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source = str(source)
        self.device = device
        self.batch_size = batch_size
        self.classifier = load_classifier(self.source, model_dir, device)
        self.classifier.eval()
        log.info("x-vector encoder %s on %s", self.source, device)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """One x-vector per clip (each peak-normalised first), rows of unit length.

        Clips are sorted by length and embedded in padded batches of
        `batch_size`, each with the clips' lengths relative to its longest.
        speechbrain's statistics pooling adds Gaussian noise of about 1e-5 to
        the mean; it is drawn from a fixed seed, so the same clips give the
        same vectors.
        """
        import torch

        clips = [peak_normalize(np.asarray(audio, dtype=np.float32).reshape(-1)) for audio in audios]
        for index, clip in enumerate(clips):
            if clip.size == 0:
                raise ValueError(f"x-vector: clip {index} is empty")
            if not np.all(np.isfinite(clip)):
                raise ValueError(f"x-vector: clip {index} contains NaN or Inf")
        if not clips:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        order = sorted(range(len(clips)), key=lambda i: clips[i].size)
        embeddings: dict[int, np.ndarray] = {}
        devices = [torch.device(self.device)] if torch.device(self.device).type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)  # the statistics pooling adds tiny noise (scale 1e-5) to the mean: fix it
            for start in range(0, len(order), self.batch_size):
                indices = order[start:start + self.batch_size]
                longest = max(clips[i].size for i in indices)
                batch = np.zeros((len(indices), longest), dtype=np.float32)
                for row, i in enumerate(indices):
                    batch[row, :clips[i].size] = clips[i]
                relative_lengths = torch.tensor([clips[i].size / longest for i in indices])
                vectors = self.classifier.encode_batch(torch.from_numpy(batch), relative_lengths)
                vectors = torch.nn.functional.normalize(vectors.reshape(len(indices), -1), dim=-1)
                for row, i in enumerate(indices):
                    embeddings[i] = vectors[row].float().cpu().numpy()
        return np.stack([embeddings[i] for i in range(len(clips))]).astype(np.float32)
