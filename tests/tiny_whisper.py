"""A tiny, randomly initialised Whisper saved as the released checkpoints are.

The released files are `torch.save({"dims": asdict(ModelDimensions), "model_state_dict": ...})`;
this one has the same layout and loads through `whisper.load_model(path)`, with the real
architecture at toy width: 80 mel bands, the 1500 audio positions a 30 s window needs, one
layer of width 16 on each side, and the vocabulary size of the tokenizer it decodes with
(multilingual: 51865, English-only: 51864). A short text context keeps greedy decoding to a
few tokens. Every parameter is drawn from a seeded generator, so the same seed writes the same
file. Its transcripts are noise: tests check that the columns fill, never the words.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
