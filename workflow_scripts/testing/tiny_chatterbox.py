"""A randomly initialised Chatterbox checkpoint, saved as ResembleAI/chatterbox holds it.

`build_chatterbox` writes ve.safetensors, t3_cfg.safetensors, s3gen.safetensors
and tokenizer.json, loaded by the backend as chatterbox-tts's `from_local`
loads the released ones, plus sizes.json: the module sizes that
`workflow_scripts.tts.chatterbox.build_t3` and `build_s3gen` build (TINY_SIZES:
a 2-layer Llama of width 32 for T3; for S3Gen a one-layer speech tokenizer,
small CAMPPlus, decoder and HiFT (the tokenizer's heads stay 64 wide, as its rotary
embedding fixes), and the one block of the 512-wide
conformer encoder that its own layers fix). `sizes=None` writes no sizes.json
and builds chatterbox-tts's own T3() and S3Gen(): the released sizes (about
800M parameters). The voice encoder (1.4M) is always of the released size.

The tokenizer is a BPE over characters trained with `tokenizers` on a few
sentences, with chatterbox's special tokens ([START], [STOP], [UNK], [SPACE],
...) and fewer than the 704 text tokens T3 embeds. Same seed, same checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_SIZES = {
    "t3": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "head_dim": 16, "perceiver_heads": 2},
    "s3gen": {"tokenizer_state": 64, "tokenizer_heads": 1, "tokenizer_layers": 1, "campplus_channels": 32,
              "campplus_growth_rate": 8, "encoder_heads": 2, "encoder_linear_units": 64, "encoder_blocks": 1,
              "decoder_channels": 32, "decoder_head_dim": 16, "decoder_blocks": 1, "decoder_mid_blocks": 1,
              "decoder_heads": 2, "hift_channels": 32, "f0_channels": 32},
}
# what S3Token2Mel and S3Token2Wav build: build_s3gen(RELEASED_S3GEN_SIZES) has S3Gen()'s weights
RELEASED_S3GEN_SIZES = {"tokenizer_state": 1280, "tokenizer_heads": 20, "tokenizer_layers": 6,
                        "campplus_channels": 128, "campplus_growth_rate": 32, "encoder_heads": 8,
                        "encoder_linear_units": 2048, "encoder_blocks": 6, "decoder_channels": 256,
                        "decoder_head_dim": 64, "decoder_blocks": 4, "decoder_mid_blocks": 12, "decoder_heads": 8,
                        "hift_channels": 512, "f0_channels": 512}
SPECIAL_TOKENS = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
TOKENIZER_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "My name is Paul and I live in a small town.",
    "Every morning I walk to work and drink some tea.",
    "Please open the door, it is cold outside!",
    "How are you today? I am fine, thank you.",
]


def train_tokenizer(tokenizer_json: Path, vocab_size: int = 200) -> None:
    """A character BPE with chatterbox's special tokens (spaces are [SPACE], as EnTokenizer writes them)."""
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator([text.replace(" ", "[SPACE]") for text in TOKENIZER_TEXT], trainer)
    tokenizer.save(str(tokenizer_json))


def build_chatterbox(folder, sizes: dict | None = TINY_SIZES, seed: int = 0) -> str:
    """A random Chatterbox folder; `sizes=None`: the released sizes."""
    import torch
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import save_file

    from workflow_scripts.tts.chatterbox import SIZES_FILE, build_s3gen, build_t3

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    modules = {"ve": VoiceEncoder(), "t3_cfg": build_t3(sizes and sizes["t3"]),
               "s3gen": build_s3gen(sizes and sizes["s3gen"])}
    for name, module in modules.items():
        state = {key: value.contiguous() for key, value in module.state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))
    train_tokenizer(folder / "tokenizer.json")
    if sizes:
        (folder / SIZES_FILE).write_text(json.dumps(sizes, indent=1) + "\n")
    return str(folder)
