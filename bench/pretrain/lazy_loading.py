"""Pre-training throughput with crops read from disk vs held in memory (tiny ConvTasNet,
batch 64 x 4 s, the genda2025 recipe), on a synthetic LibriSpeech-like pool of FLAC files.

    python bench/pretrain/lazy_loading.py POOL_DIR OUT_DIR
"""

import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the workflow's package where it is not installed

from bench.pretrain.pool import speechlike  # noqa: E402
from workflow_scripts.files.audio import read_audio  # noqa: E402
from workflow_scripts.model.convtasnet import build_model  # noqa: E402
from workflow_scripts.training.data import AudioFiles, CropMixer, validation_set  # noqa: E402
from workflow_scripts.training.loop import train  # noqa: E402
from workflow_scripts.training.recipe import Recipe  # noqa: E402

SR = 16000
N_UTT, N_NOISE, N_VAL, N_VAL_NOISE = int(os.environ.get("N_UTT", 4000)), 200, 20, 10
STEPS, DEVICE = int(os.environ.get("STEPS", 120)), os.environ.get("DEVICE", "cuda:0")
root, out = Path(sys.argv[1]), Path(sys.argv[2])


def make_utt(i):
    n = int(np.random.default_rng(i).integers(10 * SR, 16 * SR))
    sf.write(root / "speech" / f"u{i:05d}.flac", speechlike(i, n), SR, subtype="PCM_16")
    return n


def make_noise(args):
    folder, i = args
    rng = np.random.default_rng(10_000 + i)
    n = int(rng.integers(20 * SR, 90 * SR))
    sf.write(root / folder / f"n{i:04d}.wav", (0.2 * rng.standard_normal(n)).astype(np.float32), SR,
             subtype="PCM_16")


def build_pool():
    for folder in ("speech", "noises", "val_noises"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    start = time.time()
    with Pool(16) as pool:
        lengths = pool.map(make_utt, range(N_UTT), chunksize=32)
        pool.map(make_noise, [("noises", i) for i in range(N_NOISE)] + [("val_noises", i) for i in range(N_VAL_NOISE)])
    pd.DataFrame({"utt_id": [f"u{i:05d}" for i in range(N_UTT)], "path": [f"u{i:05d}.flac" for i in range(N_UTT)],
                  "text": "", "duration_s": np.round(np.array(lengths) / SR, 4)}).to_csv(root / "speech" / "manifest.csv",
                                                                                      index=False)
    for folder, n in (("noises", N_NOISE), ("val_noises", N_VAL_NOISE)):
        pd.DataFrame({"noise_id": [f"n{i:04d}" for i in range(n)], "path": [f"n{i:04d}.wav" for i in range(n)],
                      "kind": "synthetic"}).to_csv(root / folder / "noises.csv", index=False)
    hours = sum(lengths) / SR / 3600
    return {"pool_build_s": round(time.time() - start, 1), "speech_hours": round(hours, 2),
            "speech_float32_gb": round(sum(lengths) * 4 / 1e9, 2),
            "flac_gb": round(sum(f.stat().st_size for f in (root / "speech").glob("*.flac")) / 1e9, 2)}


def drop_caches():
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main():
    results = {"device": torch.cuda.get_device_name(0) if DEVICE != "cpu" else "cpu", "date": time.strftime("%Y-%m-%d"), **build_pool()}
    speech_paths = sorted(str(p) for p in (root / "speech").glob("*.flac"))
    noise_paths = sorted(str(p) for p in (root / "noises").glob("*.wav"))
    recipe = Recipe(batch_size=64, crop_seconds=4.0, lr=1e-3, peak_normalize=True, max_steps=STEPS, val_every=1000,
                    patience=10, val_metric="si_sdri")
    t = time.time()
    speech_files = AudioFiles(speech_paths[:-N_VAL], threads=8)
    noise_files = AudioFiles(noise_paths, threads=8)
    results["headers_per_s"] = round(len(speech_paths) / (time.time() - t))

    # data alone: batches of 64 x 4 s per second
    for threads in (1, 2, 4, 8):
        mixer = CropMixer(speech_files, noise_files, recipe, read_threads=threads)
        rng = np.random.default_rng(0)
        mixer.batch(rng, 64)
        t = time.time()
        for _ in range(20):
            mixer.batch(rng, 64)
        results[f"data_batches_per_s_threads{threads}_warm_cache"] = round(20 / (time.time() - t), 2)
    cold = drop_caches()
    mixer = CropMixer(speech_files, noise_files, recipe, read_threads=8)
    rng = np.random.default_rng(1)
    t = time.time()
    for _ in range(20):
        mixer.batch(rng, 64)
    results["data_batches_per_s_threads8_after_drop_caches"] = round(20 / (time.time() - t), 2) if cold else None

    # training steps per second (train(), step 0 and the last step validate 20 utterances)
    device = torch.device(DEVICE)
    torch.backends.cudnn.benchmark = False
    val_pairs = validation_set([read_audio(p) for p in speech_paths[-N_VAL:]],
                               [read_audio(p) for p in sorted((root / "val_noises").glob("*.wav"))], 0, True)
    memory_speech = [read_audio(p) for p in speech_paths[: min(1000, N_UTT - N_VAL)]]
    memory_noises = [read_audio(p) for p in noise_paths]
    runs = {
        "tiny_memory_1000utt_prefetch": ("tiny", CropMixer(memory_speech, memory_noises, recipe), True),
        "tiny_disk_threads2_prefetch": ("tiny", CropMixer(speech_files, noise_files, recipe, read_threads=2), True),
        "tiny_disk_threads4_prefetch": ("tiny", CropMixer(speech_files, noise_files, recipe, read_threads=4), True),
        "small_memory_1000utt_prefetch": ("small", CropMixer(memory_speech, memory_noises, recipe), True),
        "small_disk_threads4_prefetch": ("small", CropMixer(speech_files, noise_files, recipe, read_threads=4), True),
    }
    warm = build_model("tiny")
    train(warm, runs["tiny_memory_1000utt_prefetch"][1], val_pairs[:2],
          Recipe(**{**recipe.__dict__, "max_steps": min(10, STEPS)}), device)
    for name, (size, mixer, prefetch) in runs.items():
        torch.manual_seed(0)
        model = build_model(size)
        if DEVICE != "cpu":
            torch.cuda.synchronize()
        t = time.time()
        result = train(model, mixer, val_pairs, recipe, device, prefetch=prefetch)
        if DEVICE != "cpu":
            torch.cuda.synchronize()
        wall = time.time() - t
        results[f"train_{name}_steps_per_s"] = round(recipe.max_steps / wall, 2)
        results[f"train_{name}_last_val_si_sdri_db"] = round(result.history[-1]["val_si_sdri_db"], 3)
    if os.environ.get("SKIP_MODULE"):
        print(json.dumps(results, indent=1))
        (out / "bench_lazy.json").write_text(json.dumps(results, indent=1))
        return
    # the step module itself: peak memory of a run on a small and on the whole pool
    small = root / "speech_small"
    small.mkdir(exist_ok=True)
    manifest = pd.read_csv(root / "speech" / "manifest.csv")
    manifest = pd.concat([manifest.iloc[:500], manifest.iloc[-N_VAL:]])
    manifest.assign(path="../speech/" + manifest.path).to_csv(small / "manifest.csv", index=False)
    wrapper = ("import resource, sys; from workflow_scripts import pretrain; pretrain.main(sys.argv[1:]); "
               "print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)")
    for name, speech_dir in (("500utt", small), (f"{N_UTT - N_VAL}utt", root / "speech")):
        command = [sys.executable, "-c", wrapper, "--speech-dir", str(speech_dir),
                   "--noise-dir", str(root / "noises"), "--val-noise-dir", str(root / "val_noises"),
                   "--num-val", str(N_VAL), "--batch-size", "64", "--crop-seconds", "4", "--peak-normalize",
                   "--max-steps", str(2 * STEPS), "--val-every", str(STEPS), "--val-metric", "si_sdri",
                   "--device", DEVICE, "--read-threads", "8", "--resume-file", str(root / f"{name}.resume.pt"),
                   "--out-dir", str(root / "runs" / name)]
        t = time.time()
        step = subprocess.run(command, capture_output=True, text=True)
        results[f"pretrain_module_{name}_{2 * STEPS}_steps_wall_s"] = round(time.time() - t, 1)
        results[f"pretrain_module_{name}_rc"] = step.returncode
        peak = [line for line in step.stderr.splitlines() if line.startswith("PEAK_RSS_MB")]
        results[f"pretrain_module_{name}_peak_rss_mb"] = int(peak[-1].split()[1]) if peak else None
        (out / f"pretrain_module_{name}.log").write_text(step.stderr[-20000:])
    print(json.dumps(results, indent=1))
    (out / "bench_lazy.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
