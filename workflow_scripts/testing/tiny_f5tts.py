"""Randomly initialised F5-TTS and Vocos checkpoints, saved as the released ones are.

- `build_f5tts`: a folder as SWivid/F5-TTS's F5TTS_v1_Base/ holds it
  (model_1250000.safetensors with the EMA weights under `ema_model.`, as
  F5-TTS's `load_checkpoint` reads them, and vocab.txt, the vocabulary F5-TTS
  ships), plus config.yaml: F5TTS_v1_Base's config with the DiT's `arch`
  replaced (TINY_F5TTS_ARCH; `arch=None` keeps the released sizes). The mel
  frames stay F5-TTS's (100 bands, 24 kHz, hop 256), which its loader fixes.
- `build_vocos`: charactr/vocos-mel-24khz's layout (config.yaml,
  pytorch_model.bin), tiny (TINY_VOCOS) or of the released size
  (VOCOS_RELEASED).

DiT's own initialisation zeroes its output projection and the AdaLN
modulations, which would make the flow zero; those are drawn again, small, so
that every layer takes part. Same seed, same checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TINY_F5TTS_ARCH = {"dim": 32, "depth": 2, "heads": 2, "ff_mult": 2, "text_dim": 16, "text_mask_padding": True,
                   "qk_norm": None, "conv_layers": 1, "pe_attn_head": None, "attn_backend": "torch",
                   "attn_mask_enabled": False, "checkpoint_activations": False}
VOCOS_RELEASED = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}
TINY_VOCOS = {"dim": 32, "intermediate_dim": 64, "num_layers": 1}
VOCOS_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: 24000
    n_fft: 1024
    hop_length: 256
    n_mels: 100
    padding: center

backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 100
    dim: {dim}
    intermediate_dim: {intermediate_dim}
    num_layers: {num_layers}

head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: {dim}
    n_fft: 1024
    hop_length: 256
    padding: center
"""


def released_config(name: str = "F5TTS_v1_Base") -> dict:
    """F5-TTS's own config of a released model (configs/<name>.yaml of the package)."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(Path(str(files("f5_tts").joinpath(f"configs/{name}.yaml"))).read_text())


def build_f5tts(folder, arch: dict | None = TINY_F5TTS_ARCH, seed: int = 0) -> str:
    """A random F5-TTS (DiT) checkpoint folder; `arch=None`: F5TTS_v1_Base's sizes."""
    from importlib.resources import files

    import torch
    import yaml
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = released_config()
    if arch is not None:
        config["model"]["arch"] = dict(arch)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), folder / "vocab.txt")
    vocab_char_map, vocab_size = get_tokenizer(str(folder / "vocab.txt"), "custom")
    mel = config["model"]["mel_spec"]
    torch.manual_seed(seed)
    model = CFM(transformer=DiT(**config["model"]["arch"], text_num_embeds=vocab_size, mel_dim=mel["n_mel_channels"]),
                mel_spec_kwargs={key: mel[key] for key in ("n_fft", "hop_length", "win_length", "n_mel_channels",
                                                            "target_sample_rate", "mel_spec_type")},
                vocab_char_map=vocab_char_map)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():  # zero-initialised by DiT: drawn again, small
                parameter.normal_(0.0, 0.02)
    state = {f"ema_model.{key}": value.contiguous() for key, value in model.state_dict().items()}
    state.update(initted=torch.tensor(True), step=torch.tensor(0))
    save_file(state, str(folder / "model_1250000.safetensors"))
    return str(folder)


def build_vocos(folder, sizes: dict | None = TINY_VOCOS, seed: int = 0) -> str:
    """A random Vocos (mel, 24 kHz) folder; `sizes=None`: charactr/vocos-mel-24khz's sizes."""
    import torch
    from vocos import Vocos

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(VOCOS_CONFIG.format(**(sizes or VOCOS_RELEASED)))
    torch.manual_seed(seed)
    vocoder = Vocos.from_hparams(str(folder / "config.yaml"))
    torch.save(vocoder.state_dict(), folder / "pytorch_model.bin")
    return str(folder)
