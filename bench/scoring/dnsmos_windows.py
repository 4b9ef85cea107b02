"""DNSMOS per clip: speechmos's windows scored one by one (baseline) against the P.835 model's front
run once a clip (candidate, `workflow_scripts/scoring/dnsmos.py`, what the workflow runs).

    python bench/scoring/dnsmos_windows.py [--clips DIR ...] [--limit 20] [--repeats 2] [--threads 1]

Clips: the challenge's test mixtures in `../shared/genda25/test_mixtures/` (F0 and VirtualM3, 45
each, 4-7 s; at most --limit of each folder), or the .wav files of the folders given. Both run on
the same clips with the same onnxruntime threads (one, as a demo job on the 2-core machine runs
it), alternately, repeat after repeat; the model sessions are made before timing. Printed: clips,
windows, seconds of audio, the median seconds per clip of each and their ratio, and the largest
difference of any score (1-5). The verdict: the candidate's scores within 1e-5 of speechmos's, and
the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile as sf
from speechmos.dnsmos import DNSMOS

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from workflow_scripts.scoring.dnsmos import SAMPLE_RATE, WindowedDNSMOS, windows  # noqa: E402

KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
TOLERANCE = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", type=Path,
                        default=sorted((REPO.parent / "shared" / "genda25" / "test_mixtures").glob("*")))
    parser.add_argument("--limit", type=int, default=20, help="clips per folder (0 = all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per session")
    args = parser.parse_args()

    files = []
    for folder in args.clips:
        found = sorted(folder.glob("*.wav"))
        files += found[: args.limit or None]
    if not files:
        sys.exit(f"no .wav files in {', '.join(map(str, args.clips))}")
    clips = []
    for path in files:
        audio, rate = sf.read(path, dtype="float32")
        if rate != SAMPLE_RATE or audio.ndim != 1:
            sys.exit(f"{path}: {rate} Hz, {audio.ndim} channel axis; DNSMOS takes 16 kHz mono")
        clips.append(np.clip(audio, -1.0, 1.0))

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    models = Path(sys.modules["speechmos.dnsmos"].__file__).parent / "dnsmos_models"
    primary, p808 = str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx")
    baseline = DNSMOS(primary, p808)
    baseline.onnx_sess = onnxruntime.InferenceSession(primary, options)
    baseline.p808_onnx_sess = onnxruntime.InferenceSession(p808, options)
    candidate = WindowedDNSMOS(primary, p808, options)
    runs = {"speechmos (baseline)": lambda clip: baseline(clip, SAMPLE_RATE, False),
            "front once a clip (candidate)": candidate}
    for score in runs.values():  # onnxruntime's first run sizes its memory
        score(clips[0])

    seconds = {name: [] for name in runs}
    scores = {}
    for _ in range(args.repeats):
        for name, score in runs.items():
            start = time.perf_counter()
            scores[name] = [score(clip) for clip in clips]
            seconds[name].append((time.perf_counter() - start) / len(clips))
    window_count = sum(len(windows(clip)[1]) for clip in clips)
    audio_s = sum(len(clip) for clip in clips) / SAMPLE_RATE
    base, cand = (statistics.median(seconds[name]) for name in runs)
    diff = max(abs(float(a[k]) - float(b[k])) for a, b in zip(*scores.values()) for k in KEYS)
    print(f"{len(clips)} clips ({audio_s:.0f} s of audio, {window_count} windows of 9.01 s), onnxruntime threads "
          f"{args.threads}, median of {args.repeats}")
    print("| DNSMOS | s per clip | x |\n|---|---|---|")
    print(f"| speechmos, window by window (baseline) | {base:.3f} | 1.00 |")
    print(f"| the front once a clip (candidate) | {cand:.3f} | {base / cand:.2f} |")
    print(f"largest score difference: {diff:.2e}")
    same = diff <= TOLERANCE
    print(f"verdict: {'same scores' if same else 'SCORES DIFFER'} (tolerance {TOLERANCE:g}), "
          f"candidate {base / cand:.2f}x the baseline")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
