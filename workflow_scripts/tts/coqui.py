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

from workflow_scripts.runtime import model_cache
from workflow_scripts.tts import BACKENDS, TTSBackend
from workflow_scripts.tts.text import split_text

log = logging.getLogger(__name__)

YOURTTS_MODEL = BACKENDS["yourtts"].default("model")
XTTS_MODEL = BACKENDS["xtts"].default("model")
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
    30 s, 4 s, 30 s, false). speed (default 1.0), model_dir (the model cache root),
    batch_size (default 1: GPT rows generated at once by `synthesize_batch`).
    Needs COQUI_TOS_AGREED=1 (the CPML license).

    Batched synthesis (batch_size > 1). The synthesis step hands the backend
    its sentences in chunks (`synthesize_batch`, `--batch-size` of the step,
    `tts.<name>.batch_size` in the config, 8 by default); the GPU batch is at
    most batch_size rows and at most the pieces of one chunk, so the chunk
    should be at least batch_size texts. Like every option, batch_size is
    recorded with the cloned voice, which the step checks against its own
    options. Every text is split as `synthesize`
    splits it, the pieces of all texts of the chunk become rows (longest text
    first, so that rows of similar length share a batch), and each group of up
    to batch_size rows is one Hugging Face `generate` over the GPT:

    - the prefix of a row is [conditioning latents | padding | start, text,
      stop], each text embedded with its own text position embeddings before
      padding; the padding is masked out by the attention mask. XTTS's GPT-2
      has null position embeddings (wpe), so where the padding sits changes
      nothing for the real tokens, and putting it after the conditioning
      latents (not in front of them) leaves no query position with nothing to
      attend to (fully masked rows can give NaN that would leak through the
      values). All rows share the padded prefix length, which is what
      coqui's inference model subtracts to get the mel position of each
      generated code, so the mel position embeddings are right for every row.
      The fake prompt ids are coqui's (1, then the start code), so the
      repetition penalty sees the same ids as for one text alone.
    - sampling is per row: the logits go through the processors coqui's
      `inference` gets from `generate` (repetition penalty, temperature,
      top_k, top_p, in that order; length_penalty only acts in beam search,
      which is not used), then each row draws its code by inverse CDF from
      its own stream of uniforms (a CPU torch.Generator seeded with the
      utterance's seed; the pieces of a text use consecutive parts of it).
      An utterance's audio therefore depends on its text and seed only, not on
      its batch neighbours, the batch size or the chunk (up to float rounding
      of batched matrix products, which could flip a draw that falls within
      rounding of a CDF boundary). It is not the audio batch_size 1 gives for
      the same seed: that path keeps coqui's own sampling from the global
      torch RNG. With top_k=1 both paths give the same codes.
    - a finished row is padded by `generate` with the stop code; each row's
      codes are cut after its first stop code (or at the length limit), which
      are the codes coqui gets for the piece alone; then, per row as in
      coqui's `inference`, the GPT latents of the codes (the GPT's forward has
      no padding mask, so it is not batched), the speed change and the
      HiFi-GAN decoder (convolutions would smear padding into the audio).
    - failures stay per utterance: an error while decoding one row is logged
      and that utterance comes back empty (the step retries it with its next
      seed); an error in the batched generation raises, and the step then
      renders the chunk's texts one by one, which with per-row sampling gives
      the same audio as in the batch.
    """

    name = "xtts"
    sample_rate = 24000
    SAMPLING = ("temperature", "length_penalty", "repetition_penalty", "top_k", "top_p")
    CLONING = ("gpt_cond_len", "gpt_cond_chunk_len", "max_ref_len", "sound_norm_refs")
    OPTIONS = ("model", "language", *SAMPLING, "speed", *CLONING, "batch_size", "model_dir")

    def __init__(self, device: str = "cpu", model: str = XTTS_MODEL, language: str = "en",
                 temperature: float | None = None, length_penalty: float | None = None,
                 repetition_penalty: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, speed: float = 1.0, gpt_cond_len: int | None = None,
                 gpt_cond_chunk_len: int | None = None, max_ref_len: int | None = None,
                 sound_norm_refs: bool | None = None, batch_size: int = 1, model_dir: str | None = None,
                 **options) -> None:
        if os.environ.get("COQUI_TOS_AGREED") != "1":
            raise PermissionError(CPML_ERROR)
        reject_unknown(self.name, options, self.OPTIONS)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{self.name} backend: batch_size must be a positive integer (GPT rows "
                             f"generated at once; 1 renders one utterance at a time), got {batch_size!r}")
        given = {"temperature": temperature, "length_penalty": length_penalty,
                 "repetition_penalty": repetition_penalty, "top_k": top_k, "top_p": top_p,
                 "gpt_cond_len": gpt_cond_len, "gpt_cond_chunk_len": gpt_cond_chunk_len,
                 "max_ref_len": max_ref_len, "sound_norm_refs": sound_norm_refs}
        super().__init__(device=device, model=model, language=language, speed=speed, batch_size=batch_size,
                         **given)
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
        self.batch_size = batch_size
        lang = language.split("-")[0]
        self.max_chars = self.model.tokenizer.char_limits.get(lang, 250)
        log.info("xtts: %s (%s) on %s, %d Hz, %d characters per pass, speed %s, batch_size %d, %s", model,
                 checkpoint, device, self.sample_rate, self.max_chars, speed, batch_size, self.settings)

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

    def synthesize_batch(self, texts: list[str], conditioning: dict, seeds: list[int]) -> list[np.ndarray]:
        """The texts with batched GPT generation (batch_size > 1; see the class docstring), else one by one.

        An utterance whose piece fails to decode comes back empty (the reason
        is logged); a failure of the batched generation raises.
        """
        if self.batch_size == 1:
            return super().synthesize_batch(texts, conditioning, seeds)
        import torch

        if len(texts) != len(seeds):
            raise ValueError(f"{self.name} backend: {len(texts)} texts but {len(seeds)} seeds")
        device = self.model.device
        gpt_cond_latent = torch.as_tensor(conditioning["gpt_cond_latent"], dtype=torch.float32).to(device)
        speaker_embedding = torch.as_tensor(conditioning["speaker_embedding"], dtype=torch.float32).to(device)
        max_codes = self.model.gpt.max_gen_mel_tokens
        rows = []  # (text index, text tokens, the row's uniforms)
        for index, (text, seed) in enumerate(zip(texts, seeds)):
            pieces = split_text(text, self.max_chars)
            generator = torch.Generator().manual_seed(int(seed))
            uniforms = torch.rand(len(pieces), max_codes, generator=generator, dtype=torch.float64)
            for piece, row_uniforms in zip(pieces, uniforms):
                rows.append((index, self.text_tokens(piece), row_uniforms))
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r][1]))
        audio: dict[int, np.ndarray | None] = {}
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                group = order[start:start + self.batch_size]
                codes = self.generate_codes([rows[r][1] for r in group],
                                            torch.stack([rows[r][2] for r in group]), gpt_cond_latent)
                for r, row_codes in zip(group, codes):
                    try:
                        audio[r] = self.decode(rows[r][1], row_codes, gpt_cond_latent, speaker_embedding)
                    except Exception as exc:  # noqa: BLE001 - one piece fails its utterance, not the batch
                        log.warning("xtts: decoding a piece of text %d failed (%s: %s)", rows[r][0],
                                    type(exc).__name__, exc)
                        audio[r] = None
        outputs = []
        for index in range(len(texts)):
            pieces = [audio[r] for r in range(len(rows)) if rows[r][0] == index]
            ok = all(piece is not None for piece in pieces)
            outputs.append(join_pieces(pieces, self.sample_rate) if ok else np.zeros(0, dtype=np.float32))
        return outputs

    def text_tokens(self, piece: str) -> list[int]:
        """The GPT text tokens of one piece, as coqui's `inference` makes them."""
        lang = self.language.split("-")[0]
        tokens = self.model.tokenizer.encode(piece.strip().lower(), lang=lang)
        if len(tokens) >= self.model.args.gpt_max_text_tokens:
            raise ValueError(f"{self.name} backend: a piece of {len(tokens)} text tokens is more than XTTS "
                             f"takes ({self.model.args.gpt_max_text_tokens - 1}): {piece!r}")
        return list(tokens)

    def generate_codes(self, tokens: list[list[int]], uniforms, gpt_cond_latent) -> list:
        """One `generate` over the rows; each row's codes up to and including its first stop code."""
        import torch
        import torch.nn.functional as F
        from transformers import LogitsProcessorList
        from transformers.generation.logits_process import (
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        gpt = self.model.gpt
        device = gpt_cond_latent.device
        embeddings = []
        for row in tokens:
            text = torch.tensor(row, dtype=torch.int32, device=device).unsqueeze(0)
            text = F.pad(F.pad(text, (0, 1), value=gpt.stop_text_token), (1, 0), value=gpt.start_text_token)
            embeddings.append(gpt.text_embedding(text) + gpt.text_pos_embedding(text))
        rows, cond_len = len(tokens), gpt_cond_latent.shape[1]
        prefix_len = cond_len + max(emb.shape[1] for emb in embeddings)
        prefix = gpt_cond_latent.new_zeros(rows, prefix_len, gpt_cond_latent.shape[2])
        prefix[:, :cond_len] = gpt_cond_latent[0]
        attention_mask = torch.ones(rows, prefix_len + 1, dtype=torch.long, device=device)
        for row, emb in enumerate(embeddings):
            prefix[row, prefix_len - emb.shape[1]:] = emb[0]
            attention_mask[row, cond_len:prefix_len - emb.shape[1]] = 0  # padding between latents and text
        gpt.gpt_inference.store_prefix_emb(prefix)
        inputs = torch.ones(rows, prefix_len + 1, dtype=torch.long, device=device)
        inputs[:, -1] = gpt.start_audio_token
        settings = self.settings
        processors = LogitsProcessorList()
        if settings["repetition_penalty"] is not None and settings["repetition_penalty"] != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty=float(settings["repetition_penalty"])))
        if settings["temperature"] is not None and settings["temperature"] != 1.0:
            processors.append(TemperatureLogitsWarper(float(settings["temperature"])))
        if settings["top_k"] is not None and settings["top_k"] != 0:
            processors.append(TopKLogitsWarper(top_k=int(settings["top_k"])))
        if settings["top_p"] is not None and settings["top_p"] < 1.0:
            processors.append(TopPLogitsWarper(top_p=float(settings["top_p"])))
        processors.append(RowSampler(uniforms.to(device=device, dtype=torch.float32), prefix_len + 1))
        generated = gpt.gpt_inference.generate(
            inputs, attention_mask=attention_mask, bos_token_id=gpt.start_audio_token,
            pad_token_id=gpt.stop_audio_token, eos_token_id=gpt.stop_audio_token,
            max_length=gpt.max_gen_mel_tokens + prefix_len + 1, do_sample=False, num_beams=1,
            logits_processor=processors, output_attentions=False)[:, prefix_len + 1:]
        codes = []
        for row in generated:
            stops = (row == gpt.stop_audio_token).nonzero()
            codes.append(row[: int(stops[0]) + 1] if len(stops) else row)
        return codes

    def decode(self, tokens: list[int], codes, gpt_cond_latent, speaker_embedding) -> np.ndarray:
        """One piece's audio from its codes: GPT latents, speed, HiFi-GAN, as coqui's `inference` does."""
        import torch
        import torch.nn.functional as F

        device = gpt_cond_latent.device
        text = torch.IntTensor(tokens).unsqueeze(0).to(device)
        codes = codes.unsqueeze(0)
        latents = self.model.gpt(
            text, torch.tensor([text.shape[-1]], device=device), codes,
            torch.tensor([codes.shape[-1] * self.model.gpt.code_stride_len], device=device),
            cond_latents=gpt_cond_latent, return_attentions=False, return_latent=True)
        length_scale = 1.0 / max(self.speed, 0.05)
        if length_scale != 1.0:
            latents = F.interpolate(latents.transpose(1, 2), scale_factor=length_scale,
                                    mode="linear").transpose(1, 2)
        wav = self.model.hifigan_decoder(latents, g=speaker_embedding)
        return wav.float().cpu().numpy().reshape(-1).astype(np.float32)


class RowSampler:
    """The last logits processor of batched XTTS generation: each row draws its own code.

    Row r's code at step t is drawn by inverse CDF from the softmax of its
    processed scores with `uniforms[r, t]`; the scores come back as 0 at the
    drawn code and -inf elsewhere, so that `generate`'s greedy choice takes it.
    """

    def __init__(self, uniforms, prompt_len: int) -> None:
        self.uniforms = uniforms
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores):
        import torch

        step = min(input_ids.shape[1] - self.prompt_len, self.uniforms.shape[1] - 1)
        cdf = torch.softmax(scores.float(), dim=-1).cumsum(dim=-1)
        target = (self.uniforms[:, step] * cdf[:, -1]).unsqueeze(1)
        drawn = torch.searchsorted(cdf, target, right=True).clamp_(max=scores.shape[1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)
