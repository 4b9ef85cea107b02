"""Zero-shot TTS with Chatterbox (Resemble AI, chatterbox-tts): T3 + S3Gen, 24 kHz, watermarked.

T3, a Llama over speech tokens, reads the text after a conditioning made of
the enrollment clip's voice-encoder embedding, its first 6 s as S3 speech
tokens (the perceiver's prompt) and an `exaggeration` level; S3Gen turns the
speech tokens into mel frames (flow matching, prompted with the clip's first
10 s and its CAMPPlus x-vector) and the mel frames into 24 kHz audio (HiFT).
Cloning needs the enrollment clip alone. Every output carries Resemble AI's
PerTh watermark, imperceptible but detectable (`perth`), as chatterbox-tts's
own `generate` applies it.

The conditioning is `ChatterboxTTS.prepare_conditionals` on the clip in
memory (chatterbox-tts reads a file with librosa; here the 16 kHz clip is
resampled with librosa as `librosa.load` would): both conditionals, T3's and
S3Gen's, computed once per speaker and stored as tensors. Synthesis is
`ChatterboxTTS.generate` piece by piece (its T3 sampling runs one text at a
time, two rows for classifier-free guidance, so utterances are not batched),
with its defaults and `max_new_tokens` (chatterbox-tts fixes 1000: 40 s) as an
option; each piece starts from its own seed. Text longer than `max_chars` is
split at sentence, clause or word boundaries, never truncated, and the pieces
joined with 0.25 s of silence.

Option `model` is the hub repository (ResembleAI/chatterbox: ve, t3_cfg and
s3gen safetensors and tokenizer.json, fetched into the model folder) or a
local folder of those files, loaded as `ChatterboxTTS.from_local` loads them.
A folder may hold sizes.json, the module sizes of a checkpoint of other sizes
than the released one (`build_t3`, `build_s3gen`); the released folder has
none and is built by chatterbox-tts's own constructors.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np

from workflow_scripts.tts import BACKENDS, HUB_FILES, TTSBackend
from workflow_scripts.tts.text import split_text

log = logging.getLogger(__name__)

DEFAULT_MODEL = BACKENDS["chatterbox"].default("model")
SAMPLE_RATE = 24000
SIZES_FILE = "sizes.json"
PIECE_PAUSE_S = 0.25
OPTIONS = ("model", "exaggeration", "cfg_weight", "temperature", "repetition_penalty", "min_p", "top_p",
           "max_new_tokens", "max_chars", "model_dir")
WEIGHTS = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors")


def piece_seed(seed: int, piece_index: int) -> int:
    """The seed of the `piece_index`-th piece of an utterance whose seed is `seed`."""
    return int(np.random.SeedSequence([int(seed), int(piece_index)]).generate_state(1)[0])


def build_t3(sizes: dict | None = None):
    """T3 (English): chatterbox-tts's own constructor, or with the Llama and perceiver of `sizes`
    (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, head_dim, perceiver_heads)."""
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.perceiver import Perceiver
    from chatterbox.models.t3.modules.t3_config import T3Config

    if not sizes:
        return T3()
    llama = {key: sizes[key] for key in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "head_dim")}
    llama["num_key_value_heads"] = llama["num_attention_heads"]
    name = "Llama_" + "_".join(f"{key}{value}" for key, value in sorted(llama.items()))
    LLAMA_CONFIGS.setdefault(name, dict(LLAMA_CONFIGS["Llama_520M"], **llama))  # T3 looks its Llama up by name
    hp = T3Config.english_only()
    hp.llama_config_name = name
    t3 = T3(hp)
    dim = llama["hidden_size"]
    t3.cond_enc.perceiver = Perceiver(pre_attention_query_size=dim, embedding_dim=dim,
                                      num_attn_heads=sizes["perceiver_heads"])
    return t3


def build_s3gen(sizes: dict | None = None):
    """S3Gen: chatterbox-tts's own constructor, or its modules at `sizes` (what S3Token2Mel and
    S3Token2Wav build, with the widths, depths and heads that their constructors fix)."""
    import librosa
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.const import S3GEN_SR
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.hifigan import HiFTGenerator
    from chatterbox.models.s3gen.transformer.upsample_encoder import UpsampleConformerEncoder
    from chatterbox.models.s3gen.utils.mel import mel_spectrogram
    from chatterbox.models.s3gen.xvector import CAMPPlus
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    if not sizes:
        return S3Gen()
    s3gen = S3Gen.__new__(S3Gen)
    torch.nn.Module.__init__(s3gen)
    tokenizer = S3Tokenizer.__new__(S3Tokenizer)  # S3Tokenizer.__init__ does not pass its config on
    S3TokenizerV2.__init__(tokenizer, "speech_tokenizer_v2_25hz", ModelConfig(
        n_audio_state=sizes["tokenizer_state"], n_audio_head=sizes["tokenizer_heads"],
        n_audio_layer=sizes["tokenizer_layers"]))
    tokenizer.n_fft = 400
    tokenizer.register_buffer("_mel_filters", torch.FloatTensor(
        librosa.filters.mel(sr=16000, n_fft=400, n_mels=tokenizer.config.n_mels)))
    tokenizer.register_buffer("window", torch.hann_window(400))
    s3gen.tokenizer = tokenizer
    s3gen.mel_extractor = mel_spectrogram
    s3gen.speaker_encoder = CAMPPlus(memory_efficient=False, init_channels=sizes["campplus_channels"],
                                     growth_rate=sizes["campplus_growth_rate"])
    s3gen.meanflow = False
    encoder = UpsampleConformerEncoder(  # 512 wide: its lookahead and upsampling layers fix that width
        output_size=512, attention_heads=sizes["encoder_heads"], linear_units=sizes["encoder_linear_units"],
        num_blocks=sizes["encoder_blocks"], dropout_rate=0.1, positional_dropout_rate=0.1,
        attention_dropout_rate=0.1, normalize_before=True, input_layer="linear", pos_enc_layer_type="rel_pos_espnet",
        selfattention_layer_type="rel_selfattn", input_size=512, use_cnn_module=False, macaron_style=False)
    estimator = ConditionalDecoder(
        in_channels=320, out_channels=80, causal=True, channels=[sizes["decoder_channels"]], dropout=0.0,
        attention_head_dim=sizes["decoder_head_dim"], n_blocks=sizes["decoder_blocks"],
        num_mid_blocks=sizes["decoder_mid_blocks"], num_heads=sizes["decoder_heads"], act_fn="gelu", meanflow=False)
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    s3gen.flow = CausalMaskedDiffWithXvec(encoder=encoder, decoder=decoder)
    s3gen.resamplers = {}
    s3gen.mel2wav = HiFTGenerator(
        sampling_rate=S3GEN_SR, base_channels=sizes["hift_channels"], upsample_rates=[8, 5, 3],
        upsample_kernel_sizes=[16, 11, 7], source_resblock_kernel_sizes=[7, 7, 11],
        source_resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        f0_predictor=ConvRNNF0Predictor(cond_channels=sizes["f0_channels"]))
    n_trim = S3GEN_SR // 50
    trim_fade = torch.zeros(2 * n_trim)
    trim_fade[n_trim:] = (torch.cos(torch.linspace(torch.pi, 0, n_trim)) + 1) / 2
    s3gen.register_buffer("trim_fade", trim_fade, persistent=False)
    s3gen.estimator_dtype = "fp32"
    return s3gen


def model_folder(model: str, model_dir: str) -> Path:
    """The folder of the Chatterbox files: a local folder, or the released files fetched into the model folder."""
    from workflow_scripts.runtime import model_cache
    from workflow_scripts.tts.hub import hub_files

    if model_cache.is_local(model):
        folder = Path(model).expanduser()
        missing = [name for name in (*WEIGHTS, "tokenizer.json") if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"chatterbox backend: {folder}: no {', '.join(missing)} in the model folder")
        return folder
    if model not in HUB_FILES["chatterbox"]:
        raise ValueError(f"chatterbox backend: model {model!r} is neither an existing folder nor a released model "
                         f"({', '.join(HUB_FILES['chatterbox'])})")
    repo, filenames = HUB_FILES["chatterbox"][model]
    return hub_files("chatterbox", repo, filenames, model_dir)[0].parent


def load_chatterbox(folder: Path, device: str):
    """ChatterboxTTS from the folder's files, as `ChatterboxTTS.from_local` loads them."""
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import load_file

    sizes = json.loads((folder / SIZES_FILE).read_text()) if (folder / SIZES_FILE).is_file() else {}
    voice_encoder = VoiceEncoder()
    voice_encoder.load_state_dict(load_file(folder / "ve.safetensors"))
    t3 = build_t3(sizes.get("t3"))
    t3_state = load_file(folder / "t3_cfg.safetensors")
    if "model" in t3_state.keys():
        t3_state = t3_state["model"][0]
    t3.load_state_dict(t3_state)
    s3gen = build_s3gen(sizes.get("s3gen"))
    result = s3gen.load_state_dict(load_file(folder / "s3gen.safetensors"), strict=False)  # as from_local
    ignored = {f"tokenizer.{name}" for name in s3gen.tokenizer.ignore_state_dict_missing}
    missing = sorted(set(result.missing_keys) - ignored)
    if missing:
        raise ValueError(f"chatterbox backend: {folder / 's3gen.safetensors'} lacks {len(missing)} weights of S3Gen "
                         f"({', '.join(missing[:3])}, ...)")
    if result.unexpected_keys:
        log.warning("chatterbox: %d weights of s3gen.safetensors are not S3Gen's (ignored, as from_local does)",
                    len(result.unexpected_keys))
    tokenizer = EnTokenizer(str(folder / "tokenizer.json"))
    return ChatterboxTTS(t3.to(device).eval(), s3gen.to(device).eval(), voice_encoder.to(device).eval(), tokenizer,
                         device)


def join_pieces(pieces: list[np.ndarray]) -> np.ndarray:
    pause = np.zeros(round(PIECE_PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    joined = []
    for index, piece in enumerate(pieces):
        joined += [pause] if index else []
        joined.append(np.asarray(piece, dtype=np.float32).reshape(-1))
    return np.concatenate(joined)


class ChatterboxBackend(TTSBackend):
    """Chatterbox conditioned on the enrollment clip alone; outputs watermarked (see the module docstring).

    Options: model (hub repository or local folder); exaggeration (0.5), cfg_weight (0.5),
    temperature (0.8), repetition_penalty (1.2), min_p (0.05), top_p (1.0): chatterbox-tts's
    `generate` defaults; max_new_tokens (1000: speech tokens, 25 a second, per piece); max_chars
    (300: longer text is split); model_dir (the model cache root).
    """

    name = "chatterbox"
    sample_rate = SAMPLE_RATE

    def __init__(self, device: str = "cpu", model: str = DEFAULT_MODEL, exaggeration: float = 0.5,
                 cfg_weight: float = 0.5, temperature: float = 0.8, repetition_penalty: float = 1.2,
                 min_p: float = 0.05, top_p: float = 1.0, max_new_tokens: int = 1000, max_chars: int = 300,
                 model_dir: str = "models", **options) -> None:
        if options:
            raise TypeError(f"chatterbox backend: unknown options {sorted(options)}; it takes {', '.join(OPTIONS)}")
        for option, value in (("max_new_tokens", max_new_tokens), ("max_chars", max_chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"chatterbox backend: {option} must be a positive integer, got {value!r}")
        if temperature <= 0 or not 0 < top_p <= 1 or cfg_weight < 0:
            raise ValueError(f"chatterbox backend: need temperature > 0, 0 < top_p <= 1 and cfg_weight >= 0, got "
                             f"{temperature}, {top_p}, {cfg_weight}")
        super().__init__(device=device, model=model, exaggeration=exaggeration, cfg_weight=cfg_weight,
                         temperature=temperature, repetition_penalty=repetition_penalty, min_p=min_p, top_p=top_p,
                         max_new_tokens=max_new_tokens, max_chars=max_chars)
        self.model_name, self.model_dir = model, model_dir
        self.exaggeration, self.max_chars, self.max_new_tokens = float(exaggeration), max_chars, max_new_tokens
        self.sampling = {"cfg_weight": float(cfg_weight), "temperature": float(temperature),
                         "repetition_penalty": float(repetition_penalty), "min_p": float(min_p), "top_p": float(top_p)}

    @functools.cached_property
    def tts(self):
        folder = model_folder(self.model_name, self.model_dir)
        tts = load_chatterbox(folder, self.device)
        log.info("chatterbox: %s (%s) on %s", self.model_name, folder, self.device)
        return tts

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """ChatterboxTTS.prepare_conditionals on the clip: T3's and S3Gen's conditionals, as CPU tensors."""
        import librosa
        import torch
        from chatterbox.models.s3tokenizer import S3_SR
        from chatterbox.models.s3gen import S3GEN_SR
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        tts = self.tts
        clip_24k = librosa.resample(np.asarray(enrollment, dtype=np.float32), orig_sr=sample_rate, target_sr=S3GEN_SR)
        clip_16k = librosa.resample(clip_24k, orig_sr=S3GEN_SR, target_sr=S3_SR)
        with torch.inference_mode():
            gen = tts.s3gen.embed_ref(clip_24k[:tts.DEC_COND_LEN], S3GEN_SR, device=self.device)
            prompt_tokens, _ = tts.s3gen.tokenizer.forward([clip_16k[:tts.ENC_COND_LEN]],
                                                           max_len=tts.t3.hp.speech_cond_prompt_len)
            speaker = torch.from_numpy(tts.ve.embeds_from_wavs([clip_16k], sample_rate=S3_SR)).mean(axis=0,
                                                                                                      keepdim=True)
        t3_cond = T3Cond(speaker_emb=speaker, cond_prompt_speech_tokens=torch.atleast_2d(prompt_tokens),
                         emotion_adv=self.exaggeration * torch.ones(1, 1, 1))

        def cpu(value):
            return value.detach().cpu().clone() if torch.is_tensor(value) else value

        return {"t3": {key: cpu(value) for key, value in t3_cond.__dict__.items()},
                "gen": {key: cpu(value) for key, value in gen.items()}}

    def _conditionals(self, conditioning: dict):
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import Conditionals

        if set(conditioning) != {"t3", "gen"}:
            raise ValueError("chatterbox backend: conditioning has no T3 and S3Gen conditionals "
                             "(was it made by another backend?)")
        return Conditionals(T3Cond(**conditioning["t3"]), dict(conditioning["gen"])).to(self.device)

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        import torch

        text = " ".join(str(text).split())
        if not text:
            raise ValueError("chatterbox backend: empty text")
        conds = self._conditionals(conditioning)
        pieces = []
        for index, piece in enumerate(split_text(text, self.max_chars)):
            torch.manual_seed(piece_seed(seed, index))  # also seeds every CUDA device
            pieces.append(self.generate(piece, conds))
            if pieces[-1].size == 0:
                return pieces[-1]  # a piece without speech fails its utterance, which is retried whole
        return join_pieces(pieces)

    def generate(self, text: str, conds) -> np.ndarray:
        """ChatterboxTTS.generate of one piece with these conditionals, watermarked as it watermarks."""
        import torch
        import torch.nn.functional as F
        from chatterbox.models.s3tokenizer import drop_invalid_tokens
        from chatterbox.tts import punc_norm

        tts = self.tts
        tokens = tts.tokenizer.text_to_tokens(punc_norm(text)).to(self.device)
        if self.sampling["cfg_weight"] > 0.0:
            tokens = torch.cat([tokens, tokens], dim=0)  # the unconditional row of classifier-free guidance
        tokens = F.pad(F.pad(tokens, (1, 0), value=tts.t3.hp.start_text_token), (0, 1),
                       value=tts.t3.hp.stop_text_token)
        with torch.inference_mode():
            speech_tokens = tts.t3.inference(t3_cond=conds.t3, text_tokens=tokens, max_new_tokens=self.max_new_tokens,
                                             **self.sampling)[0]
            speech_tokens = drop_invalid_tokens(speech_tokens)
            speech_tokens = speech_tokens[speech_tokens < 6561].to(self.device)
            if speech_tokens.numel() == 0:
                return np.zeros(0, dtype=np.float32)  # nothing but stop tokens: the step retries with a new seed
            wav, _ = tts.s3gen.inference(speech_tokens=speech_tokens, ref_dict=conds.gen)
        wav = wav.squeeze(0).detach().float().cpu().numpy()
        return np.asarray(tts.watermarker.apply_watermark(wav, sample_rate=SAMPLE_RATE), dtype=np.float32)
