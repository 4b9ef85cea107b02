"""Zero-shot TTS with SpeechT5, conditioned on the x-vector of the enrollment clip.

The GenDA challenge's SpeechT5 system: microsoft/speecht5_tts turns text into
a log-mel spectrogram, speaking with the voice of a 512-dimensional x-vector
(speechbrain/spkrec-xvect-voxceleb of the 16 kHz enrollment clip,
L2-normalised: `workflow_scripts.scoring.xvector`), and microsoft/speecht5_hifigan
turns it into 16 kHz audio. The conditioning is that x-vector, computed once
per speaker.

Decoding follows transformers' `SpeechT5ForTextToSpeech.generate_speech`
step by step (stop when the summed stop probabilities of a step reach
`threshold`, after at least `minlenratio` and at most `maxlenratio` steps per
input token divided by the reduction factor), batched over utterances with
the encoder's attention mask, with three differences that make an utterance's
audio depend only on its text and seed, not on the batch it is in:

- Each utterance's minimum and maximum lengths come from its own token count
  (`generate_speech` takes them from the padded batch), and its maximum never
  exceeds the decoder's `max_speech_positions`.
- The decoder prenet's dropout, which SpeechT5 keeps on at inference
  (as Tacotron 2 does), draws its masks from a generator seeded with the
  utterance's seed (`generate_speech` draws one mask for the whole batch
  from torch's global generator). The masks are drawn on the CPU, so a seed
  gives the same masks on every device. As in transformers, a unit is kept
  with probability `speech_decoder_prenet_dropout` and scaled by 1 / (1 - p).
- Each utterance's spectrogram goes through the postnet at its own length,
  and its audio is that of the vocoder run on it alone: the vocoder runs on
  zero-padded batches, and the end of each utterance, whose receptive field
  reaches into the padding, is vocoded again on its own (`_vocode`).

The decoder prenet is run on the newest frame only, as only its output is
used at each step. Text longer than the encoder's `max_text_positions` tokens
is split at sentence boundaries (`workflow_scripts.tts.text.split_text`), the
pieces synthesized in the same batch and concatenated, never truncated.

An untrained checkpoint's stop head says about 0.5 for each of the step's
frames, so with the default threshold it stops after its first step (or
minlenratio); tests and the speed benchmark set `threshold` above the
reduction factor, which no step can reach, to decode to maxlenratio.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import numpy as np

from workflow_scripts.runtime import model_cache

from workflow_scripts.scoring import xvector
from workflow_scripts.tts import BACKENDS, TTSBackend
from workflow_scripts.tts.text import split_text

log = logging.getLogger(__name__)

DEFAULT_MODEL = BACKENDS["speecht5"].default("model")
DEFAULT_VOCODER = BACKENDS["speecht5"].default("vocoder")
DEFAULT_SPEAKER_ENCODER = BACKENDS["speecht5"].default("speaker_encoder")
SAMPLE_RATE = 16000
VOCODER_BATCH_FRAMES = 16384  # most zero-padded frames in one vocoder call (bounds its memory)


def piece_seed(seed: int, piece_index: int) -> int:
    """The seed of the `piece_index`-th piece of an utterance whose seed is `seed`."""
    return int(np.random.SeedSequence([int(seed), int(piece_index)]).generate_state(1)[0])


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def load_pretrained(cls, name: str, what: str, model_dir: str | os.PathLike):
    """`cls.from_pretrained(name)`: a local folder with no network, a hub id from the cache under
    `model_dir` first, then from the hub (unless HF_HUB_OFFLINE); fails naming the model."""
    if model_cache.is_local(name):
        return cls.from_pretrained(str(Path(name).expanduser()), local_files_only=True)
    cache_dir = model_cache.cache_dirs(model_dir)["huggingface"] / "hub"
    try:
        return cls.from_pretrained(name, cache_dir=str(cache_dir), local_files_only=True)
    except OSError as exc:
        cached_error = exc
    if not xvector.network_allowed():
        raise RuntimeError(
            f"speecht5: {what} {name!r} is not in {cache_dir} and network access is off (HF_HUB_OFFLINE) "
            f"({_first_line(cached_error)}); fill the model folder with "
            f"`python -m workflow_scripts.download_models`"
        ) from cached_error
    try:
        return cls.from_pretrained(name, cache_dir=str(cache_dir))
    except Exception as exc:
        raise RuntimeError(
            f"speecht5: cannot load {what} {name!r}: not in {cache_dir} and it could not be fetched "
            f"({_first_line(exc)}); fill the model folder with "
            f"`python -m workflow_scripts.download_models` where there is internet, or name a local folder"
        ) from exc


class SpeechT5Backend(TTSBackend):
    """SpeechT5 + HiFi-GAN speaking with the x-vector of the enrollment clip.

    Options: model (SpeechT5ForTextToSpeech and its processor), vocoder
    (SpeechT5HifiGan), speaker_encoder (speechbrain x-vector model): hub ids
    or local folders. threshold, minlenratio, maxlenratio: the stopping rule
    of `generate_speech` (same defaults). max_text_tokens: split text into
    pieces of at most this many tokens (default: the encoder's
    max_text_positions). max_batch: most pieces decoded at once.
    normalize_numbers: spell out numbers ("42" -> "forty two") with the
    tokenizer's EnglishNumberNormalizer before tokenizing (default on).
    """

    name = "speecht5"
    sample_rate = SAMPLE_RATE

    def __init__(self, device: str = "cpu", model: str = DEFAULT_MODEL, vocoder: str = DEFAULT_VOCODER,
                 speaker_encoder: str = DEFAULT_SPEAKER_ENCODER, threshold: float = 0.5,
                 minlenratio: float = 0.0, maxlenratio: float = 20.0, max_text_tokens: int | None = None,
                 max_batch: int = 32, normalize_numbers: bool = True, model_dir: str = "models") -> None:
        if not 0.0 <= minlenratio <= maxlenratio or maxlenratio <= 0.0:
            raise ValueError(f"speecht5: need 0 <= minlenratio <= maxlenratio and maxlenratio > 0, "
                             f"got {minlenratio}, {maxlenratio}")
        if max_text_tokens is not None and max_text_tokens < 8:
            raise ValueError(f"speecht5: max_text_tokens must be >= 8, got {max_text_tokens}")
        if max_batch < 1:
            raise ValueError(f"speecht5: max_batch must be >= 1, got {max_batch}")
        super().__init__(device=device, model=model, vocoder=vocoder, speaker_encoder=speaker_encoder,
                         threshold=threshold, minlenratio=minlenratio, maxlenratio=maxlenratio,
                         max_text_tokens=max_text_tokens, max_batch=max_batch,
                         normalize_numbers=normalize_numbers)
        self.model_name = model
        self.vocoder_name = vocoder
        self.speaker_encoder_name = speaker_encoder
        self.threshold = float(threshold)
        self.minlenratio = float(minlenratio)
        self.maxlenratio = float(maxlenratio)
        self.max_batch = max_batch
        self.normalize_numbers = normalize_numbers
        self.model_dir = model_dir
        self._max_text_tokens = max_text_tokens

    # models are loaded when first needed: cloning needs only the encoder, synthesis only the rest
    @functools.cached_property
    def encoder(self) -> xvector.XVectorEncoder:
        return xvector.XVectorEncoder(self.speaker_encoder_name, model_dir=self.model_dir, device=self.device)

    @functools.cached_property
    def processor(self):
        from transformers import SpeechT5Processor

        return load_pretrained(SpeechT5Processor, self.model_name, "processor", self.model_dir)

    @functools.cached_property
    def model(self):
        from transformers import SpeechT5ForTextToSpeech

        model = load_pretrained(SpeechT5ForTextToSpeech, self.model_name, "model", self.model_dir)
        log.info("speecht5: model %s on %s", self.model_name, self.device)
        return model.to(self.device).eval()

    @functools.cached_property
    def vocoder(self):
        from transformers import SpeechT5HifiGan

        vocoder = load_pretrained(SpeechT5HifiGan, self.vocoder_name, "vocoder", self.model_dir)
        if vocoder.config.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"speecht5: vocoder {self.vocoder_name!r} makes "
                             f"{vocoder.config.sampling_rate} Hz audio, expected {SAMPLE_RATE} Hz")
        return vocoder.to(self.device).eval()

    @property
    def max_text_tokens(self) -> int:
        """Most tokens (end-of-sequence token included) the encoder takes in one piece."""
        limit = self.model.config.max_text_positions
        return limit if self._max_text_tokens is None else min(self._max_text_tokens, limit)

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        """The enrollment clip's x-vector (16 kHz, peak-normalised, L2-normalised)."""
        from workflow_scripts.files.audio import resample

        clip = resample(np.asarray(enrollment, dtype=np.float32), sample_rate, SAMPLE_RATE)
        vector = self.encoder.embed([clip])[0]
        return {"xvector": vector, "speaker_encoder": self.speaker_encoder_name}

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        return self.synthesize_batch([text], conditioning, [seed])[0]

    def synthesize_batch(self, texts: list[str], conditioning: dict, seeds: list[int]) -> list[np.ndarray]:
        """Every text's pieces decoded together (at most `max_batch` at once), then concatenated."""
        if len(texts) != len(seeds):
            raise ValueError(f"speecht5: {len(texts)} texts but {len(seeds)} seeds")
        speaker = self._speaker_embedding(conditioning)
        pieces, owners, piece_seeds = [], [], []
        for index, (text, seed) in enumerate(zip(texts, seeds)):
            for piece_index, piece in enumerate(self.split(text)):
                pieces.append(piece)
                owners.append(index)
                piece_seeds.append(piece_seed(seed, piece_index))
        token_ids = [self._token_ids(piece) for piece in pieces]
        order = sorted(range(len(pieces)), key=lambda i: len(token_ids[i]))  # less padding
        audio_of_piece: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.max_batch):
            rows = order[start:start + self.max_batch]
            waves = self.decode([token_ids[i] for i in rows], speaker, [piece_seeds[i] for i in rows])
            audio_of_piece.update(zip(rows, waves))
        return [
            np.concatenate([audio_of_piece[i] for i in range(len(pieces)) if owners[i] == index])
            for index in range(len(texts))
        ]

    def split(self, text: str) -> list[str]:
        """`text` in pieces that each fit the encoder, split at sentence boundaries, never truncated."""
        text = " ".join(str(text).split())
        if not text:
            raise ValueError("speecht5: empty text")
        limit = self.max_text_tokens
        max_chars = limit
        while True:
            pieces = split_text(text, max_chars)
            longest = max(len(self._token_ids(piece)) for piece in pieces)
            if longest <= limit:
                return pieces
            max_chars -= max(1, longest - limit)  # a character is about one token of the char model
            if max_chars < 1:
                raise ValueError(f"speecht5: cannot split {text[:60]!r}... into pieces of {limit} tokens")

    def _token_ids(self, text: str) -> list[int]:
        return self.processor(text=text, normalize=self.normalize_numbers)["input_ids"]

    def _speaker_embedding(self, conditioning: dict):
        import torch

        if "xvector" not in conditioning:
            raise ValueError("speecht5: conditioning has no 'xvector' (was it made by another backend?)")
        vector = torch.as_tensor(np.asarray(conditioning["xvector"], dtype=np.float32)).reshape(-1)
        expected = self.model.config.speaker_embedding_dim
        if vector.numel() != expected:
            raise ValueError(f"speecht5: conditioning x-vector has {vector.numel()} values, the model "
                             f"{self.model_name!r} takes {expected}")
        return vector.to(self.device)

    def _dropout_keep_masks(self, seeds: list[int], num_steps: list[int]):
        """Per row, which decoder-prenet units are kept at each step: (rows, steps, layers, units) bool."""
        import torch

        config = self.model.config
        keep = torch.zeros(len(seeds), max(num_steps), config.speech_decoder_prenet_layers,
                           config.speech_decoder_prenet_units, dtype=torch.bool)
        for row, (seed, steps) in enumerate(zip(seeds, num_steps)):
            generator = torch.Generator().manual_seed(int(seed))
            shape = (steps, config.speech_decoder_prenet_layers, config.speech_decoder_prenet_units)
            keep[row, :steps] = torch.rand(shape, generator=generator) < config.speech_decoder_prenet_dropout
        return keep.to(self.device)

    def decode(self, token_ids: list[list[int]], speaker, seeds: list[int]) -> list[np.ndarray]:
        """Audio of each token sequence (one batch), each decoded as if alone."""
        import torch

        config = self.model.config
        reduction = config.reduction_factor
        lengths = [len(ids) for ids in token_ids]
        input_ids = torch.full((len(token_ids), max(lengths)), config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(token_ids):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
        max_steps = [min(max(int(n * self.maxlenratio / reduction), 1), config.max_speech_positions)
                     for n in lengths]
        min_steps = [min(int(n * self.minlenratio / reduction), steps)
                     for n, steps in zip(lengths, max_steps)]
        keep = self._dropout_keep_masks(seeds, max_steps)
        with torch.inference_mode():
            input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
            spectrogram, num_steps = self._decode_steps(input_ids, attention_mask, speaker, keep,
                                                        min_steps, max_steps)
            return self._vocode(spectrogram, [steps * reduction for steps in num_steps])

    def _decode_steps(self, input_ids, attention_mask, speaker, keep, min_steps, max_steps):
        """Autoregressive decoding; returns the frames of all rows and each row's number of steps."""
        import torch

        model, config = self.model, self.model.config
        rows, reduction, num_mel_bins = input_ids.size(0), config.reduction_factor, config.num_mel_bins
        prenet = model.speecht5.decoder.prenet
        postnet = model.speech_decoder_postnet
        dropout_scale = 1.0 / (1.0 - config.speech_decoder_prenet_dropout)
        encoder_states = model.speecht5.encoder(
            input_values=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        speaker = torch.nn.functional.normalize(speaker.reshape(1, -1).to(encoder_states.dtype), dim=-1)
        speaker = speaker.reshape(1, 1, -1).expand(rows, 1, -1)
        min_steps_t = torch.tensor(min_steps, device=self.device)
        max_steps_t = torch.tensor(max_steps, device=self.device)
        done_at = torch.zeros(rows, dtype=torch.long, device=self.device)  # step a row ended at (0: running)
        last_frame = encoder_states.new_zeros(rows, 1, num_mel_bins)
        past_key_values = None
        frames = []
        for step in range(max(max_steps)):
            hidden = last_frame
            for layer_index, layer in enumerate(prenet.layers):
                hidden = torch.relu(layer(hidden))
                hidden = torch.where(keep[:, step, layer_index].unsqueeze(1), hidden, 0.0) * dropout_scale
            hidden = prenet.final_layer(hidden)
            hidden = hidden + prenet.encode_positions.alpha * prenet.encode_positions.pe[:, step:step + 1]
            hidden = torch.relu(prenet.speaker_embeds_layer(torch.cat([hidden, speaker], dim=-1)))
            decoder_out = model.speecht5.decoder.wrapped_decoder(
                hidden_states=hidden, attention_mask=None, encoder_hidden_states=encoder_states,
                encoder_attention_mask=attention_mask, past_key_values=past_key_values, use_cache=True,
                return_dict=True)
            past_key_values = decoder_out.past_key_values
            decoder_state = decoder_out.last_hidden_state.squeeze(1)
            spectrum = postnet.feat_out(decoder_state).view(rows, reduction, num_mel_bins)
            frames.append(spectrum)
            last_frame = spectrum[:, -1:, :]
            stop_prob = torch.sigmoid(postnet.prob_out(decoder_state)).sum(dim=-1)
            count = step + 1
            stops = (stop_prob >= self.threshold) | (count >= max_steps_t)
            ends = (done_at == 0) & (count >= min_steps_t) & stops
            done_at = torch.where(ends, count, done_at)
            # checking costs a device sync: every 4 steps
            if (count % 4 == 0 or count == max(max_steps)) and bool((done_at > 0).all()):
                break
        return torch.cat(frames, dim=1), done_at.tolist()

    def _vocode(self, spectrogram, num_frames: list[int]) -> list[np.ndarray]:
        """Postnet and vocoder: each row's audio as if it were vocoded alone.

        The postnet runs on each row's own frames (rows of equal length
        together). The vocoder runs on zero-padded groups of rows (at most
        VOCODER_BATCH_FRAMES padded frames a call), which is exact except in
        the last `radius` frames of each row, the ones whose receptive field
        reaches into the padding; those are vocoded again from the row's last
        2 * radius frames alone (all rows together, as they are of equal
        length), of which the last `radius` frames are exact.
        """
        import torch

        with torch.inference_mode():
            return self._vocode_rows(spectrogram, num_frames)

    def _vocode_rows(self, spectrogram, num_frames: list[int]) -> list[np.ndarray]:
        import torch

        postnet, vocoder = self.model.speech_decoder_postnet, self.vocoder
        dtype = next(vocoder.parameters()).dtype
        hop = int(np.prod(vocoder.config.upsample_rates))
        radius = vocoder_radius_frames(vocoder.config)
        mels = [None] * len(num_frames)
        for frames in sorted(set(num_frames)):
            rows = [row for row, n in enumerate(num_frames) if n == frames]
            for row, mel in zip(rows, postnet.postnet(spectrogram[rows, :frames]).to(dtype)):
                mels[row] = mel
        waves = [None] * len(num_frames)
        for rows in _padded_groups(num_frames, VOCODER_BATCH_FRAMES):
            audio = vocoder(torch.nn.utils.rnn.pad_sequence([mels[row] for row in rows], batch_first=True))
            for row, wave in zip(rows, audio):
                waves[row] = wave[: num_frames[row] * hop]
        long_rows = [row for row, n in enumerate(num_frames) if n > 2 * radius]
        for start in range(0, len(long_rows), max(1, VOCODER_BATCH_FRAMES // (2 * radius))):
            rows = long_rows[start:start + max(1, VOCODER_BATCH_FRAMES // (2 * radius))]
            tails = vocoder(torch.stack([mels[row][-2 * radius:] for row in rows]))
            for row, tail in zip(rows, tails):
                keep = (num_frames[row] - radius) * hop
                waves[row] = torch.cat([waves[row][:keep], tail[radius * hop:]])
        for row, n in enumerate(num_frames):
            if n <= 2 * radius:  # too short for the tail: alone
                waves[row] = vocoder(mels[row].unsqueeze(0))[0]
        return [wave.float().cpu().numpy().astype(np.float32) for wave in waves]


def vocoder_radius_frames(config) -> int:
    """How many frames either side of its own a HiFi-GAN output sample can depend on (a bound)."""
    radius, samples_per_frame = 3.0, 1  # conv_pre: kernel 7
    for upsample_rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
        samples_per_frame *= upsample_rate
        radius += kernel / samples_per_frame  # the transposed convolution (twice its reach)
        radius += max(sum((size - 1) * (dilation + 1) / 2 for dilation in dilations)  # dilated + plain conv
                      for size, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
                      ) / samples_per_frame
    radius += 3 / samples_per_frame  # conv_post: kernel 7
    return math.ceil(radius) + 1


def _padded_groups(num_frames: list[int], max_padded_frames: int) -> list[list[int]]:
    """Rows, longest first, in groups whose padded size (rows x longest) stays within the budget."""
    groups: list[list[int]] = []
    for row in sorted(range(len(num_frames)), key=lambda r: -num_frames[r]):
        if groups and (len(groups[-1]) + 1) * num_frames[groups[-1][0]] <= max_padded_frames:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups
