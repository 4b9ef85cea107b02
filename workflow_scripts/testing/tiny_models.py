"""Randomly initialised checkpoints of the real architectures, saved as the released ones are.

No weights can be downloaded where the tests run, so tests and benches build
the models they load: the same classes and file layout as the released
checkpoints, with random weights, tiny unless sizes are given. Loading them
goes through exactly the code path the released weights use
(`from_pretrained`, speechbrain's `from_hparams`, coqui's loaders,
`whisper.load_model`); what they say is noise, so tests check that outputs
fill, never the words or the scores.

- `build_tiny_xvector`: speechbrain/spkrec-xvect-voxceleb's layout
  (hyperparams.yaml whose `pretrained_path` names the hub id, as the hub file
  does, and embedding_model/mean_var_norm_emb/classifier/label_encoder.ckpt).
  The TDNN is tiny (channels 16, 16, 16, 16, 48; `tiny=False`: the released
  sizes) but the embedding keeps the real 512 dimensions, so that SpeechT5
  takes it as it takes the real one.
- `build_speecht5_tts`: microsoft/speecht5_tts's layout (config, weights and
  a SpeechT5Processor whose spm_char.model is a sentencepiece character model
  trained on a few sentences), tiny or of the released size.
- `build_speecht5_hifigan`: microsoft/speecht5_hifigan's layout, tiny or of
  the released size.
- `build_yourtts`: config.json, model_file.pth, config_se.json, model_se.pth,
  speakers.json, language_ids.json (coqui Vits configured like YourTTS, with a
  d-vector H/ASP ResNet speaker encoder; YOURTTS_SIZES gives the hub model's).
- `build_xtts`: config.json, model.pth, vocab.json, speakers_xtts.pth (coqui
  Xtts with the perceiver conditioning of v2 and a BPE vocab trained with
  `tokenizers`; XTTS_V2_SIZES gives xtts_v2's). What XttsArgs and coqui's
  speaker encoder setup do not expose is built at its fixed size: XTTS's
  HiFi-GAN decoder (512 channels) and both ResNet-34 speaker encoders. The
  XTTS hub folder has no DVAE (inference does not use it), so none is built.
  XTTS's GPT stops only when it happens to sample its stop token or reaches
  its length limit.
- `build_tiny_whisper`: the released files' layout (`torch.save({"dims": ...,
  "model_state_dict": ...})`, loaded by `whisper.load_model(path)`) at toy
  width: 80 mel bands, the 1500 audio positions a 30 s window needs, one layer
  of width 16 on each side, and the vocabulary size of the tokenizer it decodes
  with (multilingual: 51865, English-only: 51864); a short text context keeps
  greedy decoding to a few tokens. `dims` gives other sizes.

Every builder draws its parameters from a seeded generator: the same seed
writes the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

# speechbrain x-vector and SpeechT5 (Hugging Face layouts)

TINY_XVECTOR_HPARAMS = """\
# ############################################################################
# Model: xvector for speaker recognition (tiny, random weights; real layout)
# ############################################################################

# Feature parameters
n_mels: 24

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/spkrec-xvect-voxceleb

# Output parameters
out_n_neurons: 4

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: !ref <n_mels>
    activation: !name:torch.nn.LeakyReLU
    tdnn_blocks: 5
    tdnn_channels: [16, 16, 16, 16, 48]
    tdnn_kernel_sizes: [5, 3, 3, 1, 1]
    tdnn_dilations: [1, 2, 3, 1, 1]
    lin_neurons: 512

classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 512]
    activation: !name:torch.nn.LeakyReLU
    lin_blocks: 1
    lin_neurons: 512
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.ckpt
"""

# speechbrain/spkrec-xvect-voxceleb's hyperparams.yaml, where the tiny copy above differs
XVECTOR_RELEASED_SIZES = {"tdnn_channels: [16, 16, 16, 16, 48]": "tdnn_channels: [512, 512, 512, 512, 1500]",
                          "out_n_neurons: 4": "out_n_neurons: 7205"}

TOKENIZER_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "How vexingly quick daft zebras jump?",
    "She sells sea shells by the sea shore; the shells she sells are surely seashells.",
    "A wizard's job is to vex chumps quickly in fog, isn't it? Yes: 1234567890.",
    "JACKDAWS LOVE MY BIG SPHINX OF QUARTZ, WALTZ NYMPH, FOR QUICK JIGS VEX BUD.",
]

TINY_SPEECHT5 = dict(
    hidden_size=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
    decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=64,
    speech_decoder_prenet_units=32, speech_decoder_postnet_layers=2, speech_decoder_postnet_units=32,
    max_text_positions=64, encoder_max_relative_position=16, max_speech_positions=1200,
)
TINY_HIFIGAN = dict(
    upsample_initial_channel=32, upsample_rates=[4, 4, 4, 4], upsample_kernel_sizes=[8, 8, 8, 8],
    resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], initializer_range=0.12,
)


def build_tiny_xvector(folder, seed: int = 0, tiny: bool = True) -> str:
    """A random x-vector model folder that EncoderClassifier.from_hparams loads; returns its path.

    `tiny=False`: the TDNN and classifier of spkrec-xvect-voxceleb's sizes."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, get_default_hook

    text = TINY_XVECTOR_HPARAMS
    for tiny_line, released_line in ({} if tiny else XVECTOR_RELEASED_SIZES).items():
        text = text.replace(tiny_line, released_line)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(text, encoding="utf-8")
    torch.manual_seed(seed)
    hparams = load_hyperpyyaml(text)
    hparams["label_encoder"].load_or_create(
        folder / "label_encoder.ckpt", from_iterables=[[f"spk{i}" for i in range(hparams["out_n_neurons"])]]
    )
    for name in ("embedding_model", "mean_var_norm_emb", "classifier"):
        module = hparams[name]
        get_default_hook(module, DEFAULT_SAVE_HOOKS)(module, folder / f"{name}.ckpt")
    return str(folder)


def train_char_tokenizer(model_file, sentences=TOKENIZER_TEXT) -> None:
    """A sentencepiece character model with SpeechT5's special ids (<s> 0, <pad> 1, </s> 2, <unk> 3)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="char", vocab_size=200,
        hard_vocab_limit=False, character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
        minloglevel=2,
    )
    Path(model_file).write_bytes(model.getvalue())


def build_speecht5_tts(folder, tiny: bool = True, seed: int = 0, sentences=TOKENIZER_TEXT, **config) -> str:
    """SpeechT5ForTextToSpeech (random weights) and its processor (a character model of
    `sentences`), saved with save_pretrained."""
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spm_file = folder / "spm_char.model"
    train_char_tokenizer(spm_file, sentences)
    tokenizer = SpeechT5Tokenizer(vocab_file=str(spm_file))
    processor = SpeechT5Processor(feature_extractor=SpeechT5FeatureExtractor(), tokenizer=tokenizer)
    settings = dict(TINY_SPEECHT5 if tiny else {}, **config)
    settings.setdefault("vocab_size", max(81, len(tokenizer)))
    torch.manual_seed(seed)
    model = SpeechT5ForTextToSpeech(SpeechT5Config(**settings)).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def build_speecht5_hifigan(folder, tiny: bool = True, seed: int = 0, **config) -> str:
    """SpeechT5HifiGan (random weights), saved with save_pretrained."""
    import torch
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**dict(TINY_HIFIGAN if tiny else {}, **config))).eval()
    vocoder.save_pretrained(folder)
    return str(folder)


# coqui-tts: YourTTS and XTTS-v2 (hub layouts)

XTTS_LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu",
                  "ko", "ja", "hi"]
YOURTTS_LANGUAGES = {"en": 0, "fr-fr": 1, "pt-br": 2}
# the architecture sizes of tts_models/multilingual/multi-dataset/xtts_v2 (its config.json)
XTTS_V2_SIZES = {"gpt_layers": 30, "model_dim": 1024, "heads": 16, "max_audio_tokens": 605,
                 "num_text_tokens": 6681}
# sampling and cloning settings of xtts_v2's config.json
XTTS_V2_INFERENCE = {"temperature": 0.75, "length_penalty": 1.0, "repetition_penalty": 5.0, "top_k": 50,
                     "top_p": 0.85, "gpt_cond_len": 30, "gpt_cond_chunk_len": 4, "max_ref_len": 30,
                     "sound_norm_refs": False}
CORPUS = [
    "the quick brown fox jumps over the lazy dog.",
    "she had your dark suit in greasy wash water all year.",
    "don't ask me to carry an oily rag like that!",
    "we went to the park, and then we read some good books.",
    "is it twenty past nine? yes, it is: exactly nine twenty.",
    "please open the door; the sun is shining today.",
    "my name is paul and i live in a small town with seven friends.",
    "every morning i walk to work and drink some tea, coffee or juice.",
    "zebras quietly vex jumping wizards (and kings).",
]
# the architecture sizes of tts_models/multilingual/multi-dataset/your_tts (coqui's YourTTS recipe:
# VitsArgs defaults with 10 text-encoder layers, resblock type "2", 512-d d-vectors; H/ASP encoder on 64 mels)
YOURTTS_SIZES = {"d_vector_dim": 512, "encoder_mels": 64, "vits_sizes": {
    "hidden_channels": 192, "hidden_channels_ffn_text_encoder": 768, "num_heads_text_encoder": 2,
    "num_layers_text_encoder": 10, "num_layers_posterior_encoder": 16, "num_layers_flow": 4,
    "resblock_kernel_sizes_decoder": [3, 7, 11], "resblock_dilation_sizes_decoder": [[1, 3, 5]] * 3,
    "upsample_initial_channel_decoder": 512}}
YOURTTS_CHARACTERS = "abcdefghijklmnopqrstuvwxyzàáâäçèéêëìíîïñòóôöùúûü"
YOURTTS_PUNCTUATIONS = "!¡'(),-.:;¿? "


def train_xtts_vocab(vocab_json: Path, vocab_size: int = 120, num_text_tokens: int | None = None) -> None:
    """A BPE vocab like XTTS's: [STOP] [UNK] [SPACE] [START], language tags, whitespace pre-tokenizer.

    With `num_text_tokens`, unused added tokens pad the vocab to that size (as
    the hub vocab's 6681 entries), so the text embedding has its full size.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in XTTS_LANGUAGES]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;\"()"))
    tokenizer.train_from_iterator([line.replace(" ", "[SPACE]") for line in CORPUS], trainer)
    if num_text_tokens is not None:
        missing = num_text_tokens - tokenizer.get_vocab_size()
        tokenizer.add_tokens([f"[unused{i}]" for i in range(max(missing, 0))])
    tokenizer.save(str(vocab_json))


def build_xtts(folder: Path, *, gpt_layers: int = 2, model_dim: int = 32, heads: int = 2,
               max_audio_tokens: int = 24, num_text_tokens: int | None = None, seed: int = 0) -> Path:
    """A random XTTS-v2 model folder (default: a tiny GPT; HiFi-GAN and speaker encoder at full size)."""
    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_xtts_vocab(folder / "vocab.json", num_text_tokens=num_text_tokens)
    args = XttsArgs(
        gpt_layers=gpt_layers, gpt_n_model_channels=model_dim, gpt_n_heads=heads,
        gpt_max_audio_tokens=max_audio_tokens, gpt_max_text_tokens=402, gpt_max_prompt_tokens=70,
        gpt_num_audio_tokens=1026, gpt_start_audio_token=1024, gpt_stop_audio_token=1025,
        gpt_use_masking_gt_prompt_approach=True, gpt_use_perceiver_resampler=True,
        decoder_input_dim=model_dim, d_vector_dim=512,
    )
    config = XttsConfig(model_args=args, languages=list(XTTS_LANGUAGES), **XTTS_V2_INFERENCE)
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    model.init_models()  # the GPT is sized by the vocab, as in load_checkpoint
    config.model_args.tokenizer_file = ""
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    latent = torch.randn(1, 32, model_dim)
    embedding = torch.nn.functional.normalize(torch.randn(1, 512), dim=1).unsqueeze(-1)
    torch.save({"Random Speaker": {"gpt_cond_latent": latent, "speaker_embedding": embedding}},
               folder / "speakers_xtts.pth")
    return folder


def build_yourtts(folder: Path, *, d_vector_dim: int = 16, encoder_in_config: bool = True,
                  seed: int = 0, encoder_mels: int = 16, vits_sizes: dict | None = None) -> Path:
    """A tiny random YourTTS model folder: Vits with a d-vector ResNet speaker encoder and 3 languages.

    As in the hub folder, the config's file paths point where the model was
    trained (they do not exist here); the loader finds the files by name.
    With `encoder_in_config=False` the config names no speaker encoder (no
    speaker-consistency loss); its files are in the folder all the same.
    `vits_sizes` (VitsArgs fields) and `encoder_mels` replace the tiny sizes
    (YOURTTS_SIZES gives those of the hub model).
    """
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.encoder.configs.speaker_encoder_config import SpeakerEncoderConfig
    from TTS.encoder.utils.generic_utils import setup_encoder_model
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    encoder_config = SpeakerEncoderConfig(
        model_params={"model_name": "resnet", "input_dim": encoder_mels, "proj_dim": d_vector_dim,
                      "log_input": True, "use_torch_spec": True},
        audio=BaseAudioConfig(fft_size=512, win_length=400, hop_length=160, sample_rate=16000,
                              preemphasis=0.97, num_mels=encoder_mels, resample=False, do_trim_silence=False,
                              do_sound_norm=False, do_rms_norm=True, db_level=-27.0, signal_norm=False),
        num_classes_in_batch=100, num_utter_per_class=2, num_loader_workers=0,  # training fields
    )
    encoder_config.save_json(str(folder / "config_se.json"))
    encoder = setup_encoder_model(encoder_config)
    torch.save({"model": encoder.state_dict(), "step": 0}, folder / "model_se.pth")
    (folder / "language_ids.json").write_text(json.dumps(YOURTTS_LANGUAGES, indent=2))
    speakers = {f"train_{i}.wav": {"name": f"speaker{i}",
                                   "embedding": torch.nn.functional.normalize(torch.randn(d_vector_dim),
                                                                              dim=0).tolist()}
                for i in range(2)}
    (folder / "speakers.json").write_text(json.dumps(speakers))

    args = VitsArgs(
        hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2,
        num_layers_text_encoder=2, num_layers_posterior_encoder=2, num_layers_flow=1,
        resblock_type_decoder="2", resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 2, 2], upsample_kernel_sizes_decoder=[16, 16, 4, 4],
        upsample_initial_channel_decoder=32, init_discriminator=False, use_sdp=True,
        use_d_vector_file=True, d_vector_dim=d_vector_dim, d_vector_file=[str(folder / "speakers.json")],
        use_language_embedding=True, embedded_language_dim=4,
        language_ids_file=str(folder / "language_ids.json"),
        use_speaker_encoder_as_loss=encoder_in_config,
        speaker_encoder_model_path=str(folder / "model_se.pth") if encoder_in_config else "",
        speaker_encoder_config_path=str(folder / "config_se.json") if encoder_in_config else "",
    )
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(sample_rate=16000, hop_length=256, win_length=1024, fft_size=1024,
                              num_mels=80, mel_fmin=0.0, mel_fmax=None),
        text_cleaner="multilingual_cleaners", use_phonemes=False, add_blank=True,
        characters=CharactersConfig(characters_class="TTS.tts.models.vits.VitsCharacters", pad="_",
                                    eos="&", bos="*", blank=None, characters=YOURTTS_CHARACTERS,
                                    punctuations=YOURTTS_PUNCTUATIONS, phonemes=None, is_unique=True,
                                    is_sorted=True),
    )
    for field, value in (vits_sizes or {}).items():
        setattr(config.model_args, field, value)
    model = Vits(config)
    torch.save({"model": model.state_dict(), "step": 0}, folder / "model_file.pth")
    # paths as the training machine had them, like the hub's config.json
    trained_at = Path("/training-run/your_tts")
    for section in (config, config.model_args):
        for field in ("d_vector_file", "language_ids_file", "speaker_encoder_model_path",
                      "speaker_encoder_config_path"):
            value = section.get(field)
            if value:
                name = Path(value[0] if isinstance(value, list) else value).name
                if field == "speaker_encoder_model_path":
                    name = "model_se.pth.tar"  # the hub folder's file is model_se.pth
                old_path = str(trained_at / name)
                section[field] = [old_path] if isinstance(value, list) else old_path
    config.save_json(str(folder / "config.json"))
    return folder


# Whisper (the released checkpoint layout)

MULTILINGUAL_VOCAB = 51865  # tiny ... large-v2: 99 languages
ENGLISH_VOCAB = 51864  # *.en models: the gpt2 tokenizer


def tiny_whisper_dims(multilingual: bool = True, n_text_ctx: int = 24):
    from whisper.model import ModelDimensions

    return ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
        n_vocab=MULTILINGUAL_VOCAB if multilingual else ENGLISH_VOCAB,
        n_text_ctx=n_text_ctx, n_text_state=16, n_text_head=2, n_text_layer=1,
    )


def build_tiny_whisper(folder: str | Path, name: str = "tiny-random.pt", multilingual: bool = True,
                       seed: int = 0, dims=None) -> Path:
    """Write a random Whisper checkpoint into `folder` (tiny, or of `dims`); returns its path."""
    import torch
    from whisper.model import Whisper

    dims = dims or tiny_whisper_dims(multilingual)
    torch.manual_seed(seed)
    model = Whisper(dims)
    # the text decoder's positional embedding is created with torch.empty (the released weights fill it)
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path
