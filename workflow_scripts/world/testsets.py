"""A speaker's test set, as rows for files.folders.write_test_folder.

- mixed here: every clean utterance mixed with every noise of the speaker's set at an SNR
  drawn from a list (the challenge's recipe), with clean references;
- given: noisy recordings without clean references, numbered as the challenge numbers
  its test mixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files.audio import mix_at_snr, read_checked

MIXTURE_PEAK = 0.95  # a mixture louder than this is scaled down with its clean reference


def mixed_test_set(
    speaker_id: str,
    clean_utts: list[np.ndarray],
    noise_set: list[dict],
    noise_ids: list[str],
    snrs_db: list[float],
    rng: np.random.Generator,
) -> Iterator[dict]:
    """Every clean utterance mixed with every noise, utterance by utterance; mixture i is
    {speaker_id}_mix{i:02d}.

    The noise starts at a random offset and is scaled to an SNR drawn from
    `snrs_db`; mixture - clean is exactly the scaled noise. A mixture whose
    peak exceeds MIXTURE_PEAK is scaled down together with its clean
    reference, so each mixture has its own clean file.
    """
    index = 0
    for clean in clean_utts:
        for noise, noise_id in zip(noise_set, noise_ids):
            snr_db = float(snrs_db[int(rng.integers(len(snrs_db)))])
            offset = int(rng.integers(noise["audio"].size))
            _, scaled_noise = mix_at_snr(clean, noise["audio"], snr_db, offset)
            gain = min(1.0, MIXTURE_PEAK / float(np.max(np.abs(clean + scaled_noise))))
            clean_ref = (clean * gain).astype(np.float32)
            mixture = (clean_ref + (scaled_noise * gain).astype(np.float32)).astype(np.float32)
            yield {"mixture_id": f"{speaker_id}_mix{index:02d}", "mixture": mixture, "clean": clean_ref,
                   "noise_id": noise_id, "snr_db": snr_db}
            index += 1


def given_test_set(speaker: str, mixtures: list[Path], suffix: str = "mixed") -> Iterator[dict]:
    """Mixtures without clean references (`clean`, `noise_id`, `snr_db` empty; `source` their
    file name): mixture i is {speaker}_{suffix}_{i:02d} (the challenge's numbering), read as
    16 kHz mono float32 and checked not to be silent."""
    for index, source in enumerate(tqdm(mixtures, desc=f"{speaker} mixtures", mininterval=5.0)):
        yield {"mixture_id": f"{speaker}_{suffix}_{index:02d}", "mixture": read_checked(source, "mixture"),
               "clean": None, "noise_id": "", "snr_db": "", "source": source.name}
