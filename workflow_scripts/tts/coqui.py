"""Zero-shot TTS with coqui-tts: YourTTS and XTTS-v2.

Both clone a voice from the enrollment clip alone:

- YourTTS (VITS conditioned on a d-vector, 16 kHz): the conditioning is the
  d-vector of the clip from the model's own speaker encoder (H/ASP ResNet).
- XTTS-v2 (GPT-2 over DVAE codes + HiFi-GAN, 24 kHz): the conditioning is the
  GPT conditioning latents and the decoder's speaker embedding of the clip.

Option `model` is a coqui model name, fetched by coqui's ModelManager into its
cache (TTS_HOME, or the Hugging Face cache for XTTS-v2), or a local folder in
the layout of the hub models (config.json, the checkpoint, vocab.json or the
speaker encoder files), loaded from there without network access. Either way
the model is built and loaded by coqui's own classes, once per backend
instance. The enrollment audio is given to the models in memory or as a
temporary wav that coqui reads with soundfile (torchaudio.load would need
FFmpeg).

Text longer than the model takes in one pass is split at sentence, clause or
word boundaries and the pieces are joined with a short pause. Every utterance
starts from its own seed (torch, numpy, random), so a rerun on the same device
gives the same audio.

XTTS-v2 is under the Coqui Public Model License (CPML): its backend refuses to
start unless COQUI_TOS_AGREED=1 is set (the workflow sets it when config says
`accept_coqui_license: true`), and no model loading can wait on a prompt.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from workflow_scripts import model_cache
from workflow_scripts.tts import TTSBackend
from workflow_scripts.tts.text import split_text

log = logging.getLogger(__name__)

YOURTTS_MODEL = "tts_models/multilingual/multi-dataset/your_tts"
XTTS_MODEL = "tts_models/multilingual/multi-dataset/xtts_v2"
PIECE_PAUSE_S = 0.25  # silence between the pieces of a split text
YOURTTS_MAX_CHARS = 200  # about the longest utterances YourTTS was trained on
XTTS_LOAD_SAMPLE_RATE = 22050  # the rate XTTS reads reference audio at
CPML_ERROR = (
    "xtts backend: XTTS-v2 is under the Coqui Public Model License (CPML), which must be accepted "
    "before the model is used (its terms allow non-commercial use: https://tts-hub.github.io/cpml). "
    "Set `accept_coqui_license: true` in the config (the workflow then sets COQUI_TOS_AGREED=1 for "
    "the job), or set COQUI_TOS_AGREED=1 when running the step by hand."
)
# file-path fields of a YourTTS config, with the file names the hub folder uses for them
YOURTTS_FILE_FIELDS = {
    "speaker_encoder_model_path": ["model_se.pth", "model_se.pth.tar"],
    "speaker_encoder_config_path": ["config_se.json"],
    "d_vector_file": ["speakers.json", "speakers.pth"],
    "speakers_file": ["speaker_ids.json", "speaker_ids.pth"],
    "language_ids_file": ["language_ids.json"],
}


def seed_everything(seed: int) -> None:
    """Seed every random generator a coqui model draws from."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def join_pieces(pieces: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """Concatenate audio pieces with PIECE_PAUSE_S of silence between them."""
    pause = np.zeros(round(PIECE_PAUSE_S * sample_rate), dtype=np.float32)
    joined: list[np.ndarray] = []
    for i, piece in enumerate(pieces):
        if i:
            joined.append(pause)
        joined.append(np.asarray(piece, dtype=np.float32).reshape(-1))
    return np.concatenate(joined) if joined else np.zeros(0, dtype=np.float32)


@contextlib.contextmanager
def no_stdin():
    """Give the block an empty stdin: a prompt (coqui's license question) fails at once with EOFError."""
    saved = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        yield
    finally:
        sys.stdin = saved


def is_coqui_name(model: str) -> bool:
    parts = str(model).split("/")
    return len(parts) == 4 and parts[0] == "tts_models" and all(parts)


def find_model_files(backend: str, model: str, model_dir: str | None) -> tuple[Path, Path, Path]:
    """(folder, config.json, checkpoint) of `model`: a local folder, or a coqui name fetched to the cache."""
    from TTS.utils.manage import ModelManager

    if model_cache.is_local(model):
        folder = Path(model).expanduser()
        if folder.is_file():
            folder = folder.parent
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{backend} backend: {folder}: no config.json in the model folder")
        try:
            checkpoint, _ = ModelManager._find_files(folder)
        except ValueError as exc:
            raise FileNotFoundError(f"{backend} backend: {folder}: no model checkpoint ({exc})") from exc
        return folder, folder / "config.json", Path(checkpoint)
    if not is_coqui_name(model):
        raise ValueError(
            f"{backend} backend: model {model!r} is neither an existing folder nor a coqui model name "
            "(tts_models/<language>/<dataset>/<model>)"
        )
    manager = ModelManager() if model_dir is None else ModelManager(
        output_prefix=model_cache.cache_dirs(model_dir)["coqui"])
    model_type, language, dataset, name = model.split("/")
    if name not in manager.models_dict.get(model_type, {}).get(language, {}).get(dataset, {}):
        raise ValueError(f"{backend} backend: {model!r} is not a model of coqui's model list")
    try:
        with no_stdin():
            checkpoint, config_path, _ = manager.download_model(model)
    except Exception as exc:
        raise RuntimeError(
            f"{backend} backend: cannot load coqui model {model!r}: it is not in the model cache "
            f"({manager.output_prefix}, or HF_HOME for Hugging Face hosted models) and fetching it failed "
            f"({type(exc).__name__}: {exc}). Fetch it on a machine with network access into the same "
            "model folder, or set `model` to a local model folder."
        ) from exc
    return Path(config_path).parent, Path(config_path), Path(checkpoint)


def load_config(backend: str, config_path: Path, model_type: str):
    """The coqui config of the model, checked to be of `model_type`."""
    from TTS.config import load_config as coqui_load_config

    config = coqui_load_config(str(config_path))
    if config.model != model_type:
        raise ValueError(f"{backend} backend: {config_path} is a {config.model!r} model, not {model_type!r}")
    return config


def load_model(config, checkpoint: Path, device: str):
    """Build the model from its config and load the checkpoint, as coqui's Synthesizer does."""
    from TTS.tts.models import setup_model

    with no_stdin():
        model = setup_model(config)
        model.load_checkpoint(config, checkpoint_path=str(checkpoint), eval=True)
    return model.to(device)


def reject_unknown(backend: str, options: dict, known: tuple[str, ...]) -> None:
    if options:
        raise TypeError(f"{backend} backend: unknown options {sorted(options)}; it takes {', '.join(known)}")


def resolve(value, config, key: str):
    """`value` when set, else the model config's `key`."""
    return config[key] if value is None else value


class YourTTSBackend(TTSBackend):
    """YourTTS: VITS conditioned on the d-vector of the enrollment clip.

    Options: model (coqui name or local folder; default the hub YourTTS),
    language (default "en"; YourTTS has en, fr-fr, pt-br), length_scale,
    noise_scale, noise_scale_dp (VITS sampling; None keeps the model config's
    values, which coqui's own API uses), model_dir (the model cache root).
    """

    name = "yourtts"
    sample_rate = 16000
    OPTIONS = ("model", "language", "length_scale", "noise_scale", "noise_scale_dp", "model_dir")

    def __init__(self, device: str = "cpu", model: str = YOURTTS_MODEL, language: str = "en",
                 length_scale: float | None = None, noise_scale: float | None = None,
                 noise_scale_dp: float | None = None, model_dir: str | None = None, **options) -> None:
        reject_unknown(self.name, options, self.OPTIONS)
        super().__init__(device=device, model=model, language=language, length_scale=length_scale,
                         noise_scale=noise_scale, noise_scale_dp=noise_scale_dp)
        folder, config_path, checkpoint = find_model_files(self.name, model, model_dir)
        config = load_config(self.name, config_path, "vits")
        self._localize_paths(config, folder)
        encoder_path, encoder_config_path = self._encoder_files(config, folder)
        self.model = load_model(config, checkpoint, device)
        manager = self.model.speaker_manager
        if manager.encoder is None:
            manager.init_encoder(encoder_path, encoder_config_path, use_cuda=False)
            self.model._register_speaker_encoder()
            self.model.to(device)
        manager.use_cuda = str(device).startswith("cuda")
        languages = self.model.language_manager.language_names
        if languages and language not in languages:
            raise ValueError(f"{self.name} backend: language {language!r} not in the model's {languages}")
        self.language = language
        self.sample_rate = int(config.audio["sample_rate"])
        self.model.length_scale = resolve(length_scale, config.model_args, "length_scale")
        self.model.inference_noise_scale = resolve(noise_scale, config.model_args, "inference_noise_scale")
        self.model.inference_noise_scale_dp = resolve(noise_scale_dp, config.model_args,
                                                      "inference_noise_scale_dp")
        log.info("yourtts: %s (%s) on %s, %d Hz, length_scale %s, noise_scale %s, noise_scale_dp %s",
                 model, checkpoint, device, self.sample_rate, self.model.length_scale,
                 self.model.inference_noise_scale, self.model.inference_noise_scale_dp)

    @staticmethod
    def _localize_paths(config, folder: Path) -> None:
        """Point the config's file fields at the model folder (in memory), as coqui does after a download.

        A path that names no file is replaced by the file of the same name in
        the folder, else by the hub's default name for it; nothing is written.
        """
        for section in (config, config.model_args):
            for field, default_names in YOURTTS_FILE_FIELDS.items():
                value = section.get(field)
                if not value:
                    continue
                listed = isinstance(value, list)
                current = Path(value[0] if listed else value)
                if current.is_file():
                    continue
                for candidate in [current.name, *default_names]:
                    if (folder / candidate).is_file():
                        section[field] = [str(folder / candidate)] if listed else str(folder / candidate)
                        break

    def _encoder_files(self, config, folder: Path) -> tuple[str, str]:
        """The speaker encoder's checkpoint and config: from the model config, else the hub's file names."""
        found = []
        for field in ("speaker_encoder_model_path", "speaker_encoder_config_path"):
            path = config.model_args.get(field) or ""
            if not Path(path).is_file():
                path = next((str(folder / name) for name in YOURTTS_FILE_FIELDS[field]
                             if (folder / name).is_file()), "")
            found.append(path)
        if not all(found):
            raise FileNotFoundError(
                f"{self.name} backend: {folder}: no speaker encoder (model_se.pth and config_se.json); "
                "YourTTS computes the d-vector of the enrollment clip with it"
            )
        return found[0], found[1]

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """The d-vector of the clip from the model's speaker encoder (read by coqui from a temporary wav)."""
        import soundfile as sf
        import torch

        with tempfile.TemporaryDirectory(prefix="yourtts-enrollment-") as tmp:
            wav_path = os.path.join(tmp, "enrollment.wav")
            sf.write(wav_path, np.asarray(enrollment, dtype=np.float32), sample_rate, subtype="FLOAT")
            d_vector = self.model.speaker_manager.compute_embedding_from_clip(wav_path)
        return {"d_vector": torch.tensor(d_vector, dtype=torch.float32)}

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        import torch

        d_vector = torch.as_tensor(conditioning["d_vector"], dtype=torch.float32).reshape(1, -1)
        d_vector = d_vector.to(self.model.device)
        language_id = self.model._get_language_id(self.language)
        if language_id is not None:
            language_id = torch.tensor([language_id], device=self.model.device)
        seed_everything(seed)
        pieces = []
        for piece in split_text(text, YOURTTS_MAX_CHARS):
            ids = self.model.tokenizer.text_to_ids(piece, language=self.language)
            tokens = torch.as_tensor(ids, dtype=torch.long, device=self.model.device).unsqueeze(0)
            with torch.inference_mode():
                outputs = self.model.inference(tokens, aux_input={
                    "x_lengths": torch.tensor(tokens.shape[1:2], device=self.model.device),
                    "d_vectors": d_vector, "speaker_ids": None, "language_ids": language_id})
            pieces.append(outputs["model_outputs"][0].squeeze().float().cpu().numpy())
        return join_pieces(pieces, self.sample_rate)


class XttsBackend(TTSBackend):
    """XTTS-v2: GPT conditioning latents + speaker embedding of the enrollment clip.

    Options: model (coqui name or local folder; default the hub XTTS-v2),
    language (default "en"), temperature, length_penalty, repetition_penalty,
    top_k, top_p (GPT sampling), gpt_cond_len, gpt_cond_chunk_len, max_ref_len,
    sound_norm_refs (how the clip is read); None keeps the model config's
    values, which coqui's own API uses (for xtts_v2: 0.75, 1.0, 5.0, 50, 0.85;
    30 s, 4 s, 30 s, false). speed (default 1.0), model_dir (the model cache root).
    Needs COQUI_TOS_AGREED=1 (the CPML license).
    """

    name = "xtts"
    sample_rate = 24000
    SAMPLING = ("temperature", "length_penalty", "repetition_penalty", "top_k", "top_p")
    CLONING = ("gpt_cond_len", "gpt_cond_chunk_len", "max_ref_len", "sound_norm_refs")
    OPTIONS = ("model", "language", *SAMPLING, "speed", *CLONING, "model_dir")

    def __init__(self, device: str = "cpu", model: str = XTTS_MODEL, language: str = "en",
                 temperature: float | None = None, length_penalty: float | None = None,
                 repetition_penalty: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, speed: float = 1.0, gpt_cond_len: int | None = None,
                 gpt_cond_chunk_len: int | None = None, max_ref_len: int | None = None,
                 sound_norm_refs: bool | None = None, model_dir: str | None = None, **options) -> None:
        if os.environ.get("COQUI_TOS_AGREED") != "1":
            raise PermissionError(CPML_ERROR)
        reject_unknown(self.name, options, self.OPTIONS)
        given = {"temperature": temperature, "length_penalty": length_penalty,
                 "repetition_penalty": repetition_penalty, "top_k": top_k, "top_p": top_p,
                 "gpt_cond_len": gpt_cond_len, "gpt_cond_chunk_len": gpt_cond_chunk_len,
                 "max_ref_len": max_ref_len, "sound_norm_refs": sound_norm_refs}
        super().__init__(device=device, model=model, language=language, speed=speed, **given)
        _, config_path, checkpoint = find_model_files(self.name, model, model_dir)
        config = load_config(self.name, config_path, "xtts")
        if language.split("-")[0] not in [lang.split("-")[0] for lang in config.languages]:
            raise ValueError(f"{self.name} backend: language {language!r} is not one of the model's "
                             f"{config.languages}")
        if speed <= 0:
            raise ValueError(f"{self.name} backend: speed must be positive, got {speed}")
        self.model = load_model(config, checkpoint, device)
        self.language = language
        self.sample_rate = int(config.audio["output_sample_rate"])
        self.settings = {key: resolve(value, config, key) for key, value in given.items()}
        self.speed = speed
        lang = language.split("-")[0]
        self.max_chars = self.model.tokenizer.char_limits.get(lang, 250)
        log.info("xtts: %s (%s) on %s, %d Hz, %d characters per pass, speed %s, %s", model, checkpoint,
                 device, self.sample_rate, self.max_chars, speed, self.settings)

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """XTTS's get_conditioning_latents on the clip, given as a tensor instead of a file.

        As coqui reads a file: mono, resampled to 22.05 kHz, clipped to
        [-1, 1], cut to max_ref_len seconds, optionally normalised; then the
        decoder's speaker embedding and the GPT latents of the first
        gpt_cond_len seconds in gpt_cond_chunk_len chunks.
        """
        import torch
        import torchaudio

        audio = torch.as_tensor(np.asarray(enrollment, dtype=np.float32)).reshape(1, -1)
        if sample_rate != XTTS_LOAD_SAMPLE_RATE:
            audio = torchaudio.functional.resample(audio, sample_rate, XTTS_LOAD_SAMPLE_RATE)
        audio = audio.clamp(-1.0, 1.0)[:, : XTTS_LOAD_SAMPLE_RATE * int(self.settings["max_ref_len"])]
        audio = audio.to(self.model.device)
        if self.settings["sound_norm_refs"]:
            audio = audio / audio.abs().max() * 0.75
        speaker_embedding = self.model.get_speaker_embedding(audio, XTTS_LOAD_SAMPLE_RATE)
        gpt_cond_latent = self.model.get_gpt_cond_latents(
            audio, XTTS_LOAD_SAMPLE_RATE, length=int(self.settings["gpt_cond_len"]),
            chunk_length=int(self.settings["gpt_cond_chunk_len"]))
        return {"gpt_cond_latent": gpt_cond_latent.detach().cpu().clone(),
                "speaker_embedding": speaker_embedding.detach().cpu().clone()}

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        import torch

        gpt_cond_latent = torch.as_tensor(conditioning["gpt_cond_latent"], dtype=torch.float32)
        speaker_embedding = torch.as_tensor(conditioning["speaker_embedding"], dtype=torch.float32)
        sampling = {key: self.settings[key] for key in self.SAMPLING}
        seed_everything(seed)
        pieces = []
        for piece in split_text(text, self.max_chars):
            out = self.model.inference(piece, self.language, gpt_cond_latent, speaker_embedding,
                                       speed=self.speed, enable_text_splitting=False, **sampling)
            pieces.append(np.asarray(out["wav"], dtype=np.float32))
        return join_pieces(pieces, self.sample_rate)
