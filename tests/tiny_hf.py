"""Randomly initialised checkpoints of the real model architectures, saved as the hub ones are.

No weights can be downloaded here, so tests (and the speed benchmark) build
the models they load: the same classes and file layout as the hub repos, with
random weights, tiny by default. Loading them goes through exactly the code
path that the hub weights use (`from_pretrained`, speechbrain's
`from_hparams`); what they say is noise.

- `build_tiny_xvector`: speechbrain/spkrec-xvect-voxceleb's layout
  (hyperparams.yaml whose `pretrained_path` names the hub id, as the hub file
  does, and embedding_model/mean_var_norm_emb/classifier/label_encoder.ckpt).
  The TDNN is tiny (channels 16, 16, 16, 16, 48) but the embedding keeps the
  real 512 dimensions, so that SpeechT5 takes it as it takes the real one.
- `build_speecht5_tts`: microsoft/speecht5_tts's layout (config, weights and
  a SpeechT5Processor whose spm_char.model is a sentencepiece character model
  trained on a few sentences), tiny or of the production size.
- `build_speecht5_hifigan`: microsoft/speecht5_hifigan's layout, tiny or of
  the production size.
"""

from __future__ import annotations

import io
from pathlib import Path

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


def build_tiny_xvector(folder, seed: int = 0) -> str:
    """A random x-vector model folder that EncoderClassifier.from_hparams loads; returns its path."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, get_default_hook

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(TINY_XVECTOR_HPARAMS, encoding="utf-8")
    torch.manual_seed(seed)
    hparams = load_hyperpyyaml(TINY_XVECTOR_HPARAMS)
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
