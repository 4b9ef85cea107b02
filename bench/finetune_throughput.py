"""Fine-tuning throughput on one GPU: the plain trainer against stacked models.

    python bench/finetune_throughput.py pack --demo-dir data/demo --out .bench-stacked/demo.npz
    python bench/finetune_throughput.py run --device cuda --out OUT \
        [--data .bench-stacked/demo.npz] [--checkpoint .bench-stacked/convtasnet_tiny.pt]
    python bench/finetune_throughput.py run --device cpu --smoke --out /tmp/bench --sizes tiny \
        --ks 2 --profile-k 2 --trainer tiny:2 --trainer-steps 3 --curve-steps 2 --crop-seconds 0.25 \
        --num-val 1 --sections profile,baseline,stacked,trainer,curves,eval   # a CPU check, ~1 min

Baseline: one model at a time, eager fp32, batch 8 x 4 s crops drawn by
training.CropMixer on the CPU, the loop body of training.train (Adam, clip,
loss.item() every step). Fast paths: K models stacked in one process
(workflow_scripts/training/stacked.py, crops mixed on the device) in fp32, TF32 and
bf16 autocast, as a CUDA graph, with 1x1 convs as grouped cuDNN convs, with
cudnn.benchmark; and N plain trainer processes sharing the GPU. Also: a
profile and phase times, validation cost, train_stacked end to end, loss
curves of the fast path against the plain trainer on the same batches (and a
float64 reference), and the 45-mixture enhancement batched against one at a
time.

Data: the demo world's speech and noises packed into an .npz (`pack`; int16,
as the GPU machine has no audio reader), or synthetic speech-like signals
without it. Writes results.json, loss_curves.png and profile.txt under --out
and prints a Markdown summary last.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.model.convtasnet import ConvTasNet, build_model, count_parameters, load_checkpoint
from workflow_scripts.model.fused_gln import fused_available
from workflow_scripts.scoring.metrics import neg_sdr_loss
from workflow_scripts.model.enhance import enhance_many
from workflow_scripts.training.stacked import (
    CropMixerBatches,
    DeviceCropMixer,
    StackedAdam,
    StackedConvTasNet,
    StackedStep,
    StackedValidation,
    precision_mode,
    train_stacked,
)
from workflow_scripts.model.enhance import enhance
from workflow_scripts.training.trainer import (
    GRAD_CLIP_NORM,
    CropMixer,
    Recipe,
    mean_validation_sdr,
    train,
    validation_set,
)

SAMPLE_RATE = 16000
SIZES = ("tiny", "small", "medium")
BATCH, CROP_S = 8, 4.0
NUM_VAL, VAL_EVERY = 10, 60  # validation set and interval assumed for a paper fine-tune


# ---- data ---------------------------------------------------------------------------


def speech_like(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone with a gliding F0, a syllable-rate envelope and pauses."""
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = rng.uniform(90, 230) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(h * phase) * np.exp(-0.3 * h) for h in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None) ** 0.5
    audio = 0.3 * wave * envelope + 0.003 * rng.standard_normal(num_samples)
    return audio.astype(np.float32)


def noise_like(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    taps = rng.uniform(2, 40)
    kernel = np.exp(-np.arange(64) / taps)
    noise = np.convolve(rng.standard_normal(num_samples + 63), kernel / kernel.sum(), mode="valid")
    return (0.3 * noise / np.abs(noise).max()).astype(np.float32)


def synthetic_speakers(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    speakers = []
    for _ in range(count):
        speech = [speech_like(int(rng.uniform(2, 8) * SAMPLE_RATE), rng) for _ in range(36)]
        noises = [noise_like(int(rng.uniform(5, 8) * SAMPLE_RATE), rng) for _ in range(5)]
        speakers.append((speech, noises))
    return speakers


def synthetic_test_set(rng: np.random.Generator):
    """45 mixtures: 9 utterances x 5 noises, as a speaker's test folder."""
    mixtures = []
    for _ in range(9):
        clean = speech_like(int(rng.uniform(3, 9) * SAMPLE_RATE), rng)
        for _ in range(5):
            mixtures.append(clean + noise_like(clean.size, rng))
    return mixtures


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return [s.astype(np.float32) / 32767.0 for s in np.split(flat, np.cumsum(lengths)[:-1])]


def load_data(path: str | None, count: int = 4):
    """(speakers [(speech, noises)], 45 test mixtures, description)."""
    if path is None:
        return synthetic_speakers(count), synthetic_test_set(np.random.default_rng(9)), "synthetic"
    packed = np.load(path)
    names = [str(n) for n in packed["speakers"]]
    speakers = [
        (_split(packed[f"speech_{n}"], packed[f"speech_len_{n}"]), _split(packed[f"noise_{n}"], packed[f"noise_len_{n}"]))
        for n in names
    ]
    test = _split(packed["test_mixtures"], packed["test_len"])
    return speakers, test, f"demo world ({', '.join(names)}; int16)"


def pack(args) -> None:
    """Pack the demo world's gt speech, noises and one test folder into an npz."""
    from workflow_scripts.files.folders import read_test_folder
    from workflow_scripts.files.folders import read_speech_folder
    from workflow_scripts.training.trainer import load_noises, load_utterances

    demo = Path(args.demo_dir)
    names = sorted(p.name for p in demo.iterdir() if (p / "gt").is_dir())
    arrays = {"speakers": np.array(names)}

    def int16(signals):
        return np.concatenate([np.round(np.clip(s, -1, 1) * 32767).astype(np.int16) for s in signals])

    for name in names:
        speech = load_utterances(read_speech_folder(demo / name / "gt"))
        _, noises = load_noises(demo / name / "noises")
        arrays[f"speech_{name}"], arrays[f"speech_len_{name}"] = int16(speech), [s.size for s in speech]
        arrays[f"noise_{name}"], arrays[f"noise_len_{name}"] = int16(noises), [s.size for s in noises]
    from workflow_scripts.files.audio import read_audio

    test = [read_audio(p) for p in read_test_folder(demo / names[0] / "test")["mixture_wav"]]
    arrays["test_mixtures"], arrays["test_len"] = int16(test), [s.size for s in test]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(names)} speakers, {len(test)} test mixtures")


# ---- timing helpers --------------------------------------------------------------------


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, target_s: float, min_steps: int = 5, max_steps: int = 200) -> float:
    """Seconds per call: warm up, estimate on 3 calls, then time enough calls for target_s."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(3):
        fn()
    sync(device)
    estimate = (time.perf_counter() - start) / 3
    steps = int(min(max_steps, max(min_steps, target_s / max(estimate, 1e-6))))
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def recipe(lr=1e-3, seed=0, **kwargs) -> Recipe:
    return Recipe(batch_size=BATCH, crop_seconds=CROP_S, lr=lr, snr_low_db=-5.0, snr_high_db=5.0, seed=seed, **kwargs)


# ---- the plain trainer ------------------------------------------------------------------


class PlainTrainer:
    """The loop body of training.train, one model, step by step."""

    def __init__(self, model: ConvTasNet, speech, noises, device, seed=0):
        self.model = model.to(device).train()
        self.mixer = CropMixer(speech, noises, recipe())
        self.rng = np.random.default_rng([seed, 0])
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.device = device

    def draw(self):
        return self.mixer.batch(self.rng, BATCH)

    def step(self, batch=None) -> float:
        mixtures, cleans, _ = self.draw() if batch is None else batch
        estimate = self.model(torch.from_numpy(mixtures).to(self.device))
        loss = neg_sdr_loss(estimate, torch.from_numpy(cleans).to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
        self.optimizer.step()
        return loss.item()

    def phases(self, steps: int) -> dict:
        """Mean ms per phase, synchronising between phases."""
        names = ("data (CPU mixing)", "host-to-device", "forward+loss", "backward", "clip+Adam", "loss.item()")
        totals = dict.fromkeys(names, 0.0)
        sync(self.device)  # nothing queued from before may land in the first phase
        for _ in range(steps):
            marks = [time.perf_counter()]
            mixtures, cleans, _ = self.draw()
            marks.append(time.perf_counter())
            x, y = torch.from_numpy(mixtures).to(self.device), torch.from_numpy(cleans).to(self.device)
            sync(self.device)
            marks.append(time.perf_counter())
            loss = neg_sdr_loss(self.model(x), y)
            sync(self.device)
            marks.append(time.perf_counter())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync(self.device)
            marks.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
            self.optimizer.step()
            sync(self.device)
            marks.append(time.perf_counter())
            loss.item()
            marks.append(time.perf_counter())
            for name, a, b in zip(names, marks, marks[1:]):
                totals[name] += (b - a) * 1000 / steps
        return totals


class StackedTrainer:
    """K models stacked, crops mixed on the device, one step at a time."""

    def __init__(self, models, speakers, device, precision="fp32", cuda_graph=False, seed=0, pointwise="matmul",
                 compile=False):
        self.device = device
        self.compile = compile
        recipes = [recipe(lr=1e-3 * (1 + k % 3), seed=k) for k in range(len(models))]
        data = [speakers[k % len(speakers)] for k in range(len(models))]
        self.mixer = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], recipes, device, seed=seed)
        self.stack = StackedConvTasNet.from_models(models, device, pointwise=pointwise)
        self.optimizer = StackedAdam(self.stack, [r.lr for r in recipes])
        self.precision = precision
        self.cuda_graph = cuda_graph

    def __enter__(self):
        self._mode = precision_mode(self.precision)
        autocast_dtype = self._mode.__enter__()
        self.step_fn = StackedStep(self.stack, self.optimizer, autocast_dtype, self.cuda_graph, compile=self.compile)
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)

    def step(self):
        return self.step_fn(*self.mixer.draw())

    def phases(self, steps: int) -> dict:
        names = ("data (device mixing)", "forward+loss", "backward", "clip+Adam")
        totals = dict.fromkeys(names, 0.0)
        from workflow_scripts.training.stacked import clip_grad_norm_rows_

        sync(self.device)  # nothing queued from before may land in the first phase
        for _ in range(steps):
            marks = [time.perf_counter()]
            mixtures, cleans = self.mixer.draw()
            sync(self.device)
            marks.append(time.perf_counter())
            self.stack.zero_grad()
            losses = self.stack.losses(mixtures, cleans, self.step_fn.autocast_dtype)
            sync(self.device)
            marks.append(time.perf_counter())
            losses.sum().backward()
            sync(self.device)
            marks.append(time.perf_counter())
            clip_grad_norm_rows_(self.stack.grad_flat, GRAD_CLIP_NORM)
            self.optimizer.step()
            sync(self.device)
            marks.append(time.perf_counter())
            for name, a, b in zip(names, marks, marks[1:]):
                totals[name] += (b - a) * 1000 / steps
        return totals


# ---- sections ----------------------------------------------------------------------------


def profile_section(speakers, device, out_dir: Path, k_stacked: int) -> dict:
    """Phase times of the baseline and of a stack, and the profiler's top kernels."""
    from torch.profiler import ProfilerActivity, profile

    result = {}
    lines = []
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    plain = PlainTrainer(build_model("tiny"), *speakers[0], device)
    for _ in range(5):
        plain.step()
    result["baseline_tiny_phases_ms"] = plain.phases(10)
    with profile(activities=activities) as prof:
        for _ in range(5):
            plain.step()
        sync(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    lines += ["# baseline tiny, 5 steps", prof.key_averages().table(sort_by=sort, row_limit=15)]
    result["baseline_tiny_kernels_per_step"] = _kernel_count(prof, 5)
    result["baseline_tiny_gpu_busy_ms_per_step"] = _device_time_ms(prof, 5)
    del plain
    free_memory()
    models = [build_model("tiny") for _ in range(k_stacked)]
    with StackedTrainer(models, speakers, device) as stacked:
        for _ in range(3):
            stacked.step()
        result[f"stacked_tiny_K{k_stacked}_phases_ms"] = stacked.phases(5)
        with profile(activities=activities) as prof:
            for _ in range(3):
                stacked.step()
            sync(device)
    lines += [f"# stacked tiny K={k_stacked}, 3 steps", prof.key_averages().table(sort_by=sort, row_limit=20)]
    result[f"stacked_tiny_K{k_stacked}_kernels_per_step"] = _kernel_count(prof, 3)
    result[f"stacked_tiny_K{k_stacked}_gpu_busy_ms_per_step"] = _device_time_ms(prof, 3)
    (out_dir / "profile.txt").write_text("\n".join(lines))
    free_memory()
    return result


def _kernel_count(prof, steps) -> float:
    events = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    return len(events) / steps


def _device_time_ms(prof, steps) -> float:
    """Kernel time per step (the kernels' own intervals, not the ops that launched them)."""
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    return sum(e.time_range.elapsed_us() for e in kernels) / 1000 / steps


def baseline_section(speakers, device, sizes, target_s) -> dict:
    result = {}
    for size in sizes:
        plain = PlainTrainer(build_model(size), *speakers[0], device)
        result[size] = {"ms_per_step": 1000 * timed(plain.step, device, warmup=5, target_s=target_s),
                        "params": count_parameters(plain.model), "peak_gib": peak_gib(device)}
        val_pairs = _val_pairs(speakers[0], NUM_VAL)
        result[size]["val_s_one_model"] = timed(
            lambda model=plain.model, pairs=val_pairs: mean_validation_sdr(model, pairs, device),
            device, warmup=1, target_s=1.0, min_steps=2,
        )
        del plain
        free_memory()
    return result


def _val_pairs(speaker, count):
    """`count` validation mixtures of 3-9 s (speaker's speech tiled or cut)."""
    speech, noises = speaker
    rng = np.random.default_rng(1)
    utterances = []
    for i in range(count):
        n = int(rng.uniform(3, 9) * SAMPLE_RATE)
        utterance = speech[i % len(speech)]
        utterances.append(np.resize(utterance, n).astype(np.float32))
    return validation_set(utterances, noises, seed=0)


def train_check_section(speakers, device, steps) -> dict:
    """training.train itself (tiny), to confirm the baseline loop's speed."""
    model = build_model("tiny")
    val_pairs = [(p[0][:SAMPLE_RATE], p[1][:SAMPLE_RATE]) for p in _val_pairs(speakers[0], 1)]
    r = recipe(max_steps=5, val_every=1000)
    train(model, CropMixer(*speakers[0], r), val_pairs, r, device)
    r = recipe(max_steps=steps, val_every=10**6)
    sync(device)
    start = time.perf_counter()
    train(model, CropMixer(*speakers[0], r), val_pairs, r, device)
    sync(device)
    return {"tiny_ms_per_step_via_training_train": 1000 * (time.perf_counter() - start) / steps, "steps": steps}


def stacked_run(size, k, speakers, device, precision, cuda_graph, target_s) -> dict:
    models = [build_model(size) for _ in range(k)]
    free_memory()
    try:
        with StackedTrainer(models, speakers, device, precision, cuda_graph) as trainer:
            seconds = timed(trainer.step, device, warmup=4 if cuda_graph else 3, target_s=target_s)
        row = {"ms_per_step": 1000 * seconds, "peak_gib": peak_gib(device)}
    except torch.OutOfMemoryError:
        row = {"error": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - a variant that fails is recorded, the others still run
        row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    free_memory()
    return row


def stacked_validation_s(size, k, speakers, device) -> float:
    models = [build_model(size) for _ in range(k)]
    stack = StackedConvTasNet.from_models(models, device)
    validation = StackedValidation([_val_pairs(speakers[i % len(speakers)], NUM_VAL) for i in range(k)], device)
    with precision_mode("tf32"):
        seconds = timed(lambda v=validation, s=stack: v.mean_sdr_db(s), device, warmup=1, target_s=1.0, min_steps=2)
    del stack, validation
    free_memory()
    return seconds


def stacked_section(speakers, device, sizes, ks, precisions, target_s, deadline) -> dict:
    result = {}
    total_gib = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else math.inf
    for size in sizes:
        rows = result.setdefault(size, {})
        gib_per_model = None
        for k in ks:
            if time.time() > deadline:
                rows[f"K{k}"] = {"error": "skipped: time budget"}
                continue
            if gib_per_model and gib_per_model * k > 0.85 * total_gib:
                rows[f"K{k}"] = {"error": f"skipped: about {gib_per_model * k:.0f} GiB needed"}
                continue
            for precision in precisions:
                rows[f"K{k} {precision}"] = stacked_run(size, k, speakers, device, precision, False, target_s)
                print(f"{size} K={k} {precision}: {rows[f'K{k} {precision}']}", flush=True)
                if "peak_gib" in rows[f"K{k} {precision}"] and precision == "fp32":
                    gib_per_model = rows[f"K{k} {precision}"]["peak_gib"] / k
    return result


def graph_section(speakers, device, configs, target_s) -> dict:
    result = {}
    for size, k, precision in configs:
        row = stacked_run(size, k, speakers, device, precision, True, target_s)
        result[f"{size} K{k} {precision} graph"] = row
        print(f"{size} K={k} {precision} graph: {row}", flush=True)
    return result


def trainer_section(speakers, device, configs, steps) -> dict:
    """train_stacked end to end (device crops, validation every VAL_EVERY steps
    on NUM_VAL utterances of 3-9 s, early-stopping bookkeeping), TF32."""
    result = {}
    for size, k in configs:
        k = int(k)
        models = [build_model(size) for _ in range(k)]
        recipes = [recipe(lr=1e-3, seed=i, max_steps=steps, val_every=VAL_EVERY, patience=10**6) for i in range(k)]
        data = [speakers[i % len(speakers)] for i in range(k)]
        mixer = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], recipes, device)
        validation = StackedValidation([_val_pairs(d, NUM_VAL) for d in data], device)
        sync(device)
        start = time.perf_counter()
        train_stacked(models, mixer, validation, recipes, device, precision="tf32", progress=False)
        sync(device)
        seconds = time.perf_counter() - start
        result[f"{size} K{k}"] = {"steps": steps, "validations": 1 + steps // VAL_EVERY, "seconds": seconds,
                                  "s_per_model_step_incl_validation": seconds / (k * steps)}
        del models, mixer, validation
        free_memory()
    return result


def variant_section(speakers, device, configs, target_s) -> dict:
    """size:K:precision:change runs; change is grouped_conv (1x1 convs as a grouped
    cuDNN conv instead of batched matmuls) or cudnn_benchmark."""
    result = {}
    for config in configs:
        size, k, precision = _config(config)
        change = config.split(":")[3]
        models = [build_model(size) for _ in range(k)]
        saved = torch.backends.cudnn.benchmark
        try:
            torch.backends.cudnn.benchmark = change == "cudnn_benchmark"
            with StackedTrainer(models, speakers, device, precision, False,
                                pointwise="grouped_conv" if change == "grouped_conv" else "matmul") as trainer:
                row = {"ms_per_step": 1000 * timed(trainer.step, device, warmup=3, target_s=target_s),
                       "peak_gib": peak_gib(device)}
        except Exception as exc:  # noqa: BLE001 - a variant that fails is recorded, the others still run
            row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            torch.backends.cudnn.benchmark = saved
        result[config] = row
        print(f"{config}: {row}", flush=True)
        del models
        free_memory()
    return result


def compiled_section(speakers, device, configs, target_s, mode) -> dict:
    """size:K:precision runs with the forward pass and loss through
    torch.compile (mode None = default); the first step's time (compilation)
    is reported apart."""
    result = {}
    for config in configs:
        size, k, precision = _config(config)
        models = [build_model(size) for _ in range(k)]
        free_memory()
        try:
            with StackedTrainer(models, speakers, device, precision, False, compile=mode or True) as trainer:
                start = time.perf_counter()
                trainer.step()
                sync(device)
                first_s = time.perf_counter() - start
                row = {"ms_per_step": 1000 * timed(trainer.step, device, warmup=3, target_s=target_s),
                       "first_step_s": first_s, "peak_gib": peak_gib(device), "mode": mode or "default"}
        except torch.OutOfMemoryError:
            row = {"error": "out of memory"}
        except Exception as exc:  # noqa: BLE001 - a variant that fails is recorded, the others still run
            row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        result[f"{size} K{k} {precision} compiled"] = row
        print(f"{config} compiled: {row}", flush=True)
        del models
        free_memory()
    return result


def validation_section(speakers, device, sizes, k) -> dict:
    return {size: {"K": k, "val_s_all_models": stacked_validation_s(size, k, speakers, device)} for size in sizes}


# ---- several processes ----------------------------------------------------------------------


def worker(args) -> None:
    global CROP_S
    CROP_S = args.crop_seconds
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if args.stack:  # a stack of K models (TF32, crops on the device): K model-steps per step
        speakers, _, _ = load_data(args.data)
        trainer = StackedTrainer([build_model(args.size) for _ in range(args.stack)], speakers, device, "tf32",
                                 seed=args.seed).__enter__()
    else:
        speakers, _, _ = load_data(args.data, count=1)
        trainer = PlainTrainer(build_model(args.size), *speakers[0], device, seed=args.seed)
    for _ in range(5):
        trainer.step()
    sync(device)
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.005)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        trainer.step()
        steps += 1
    sync(device)
    Path(args.result).write_text(json.dumps({"steps": steps * max(args.stack, 1),
                                             "seconds": time.perf_counter() - start}))


def multiprocess_run(size, count, data, device, seconds, work_dir: Path, stack: int = 0) -> dict:
    """`count` worker processes sharing the device, each one plain trainer or (stack > 0) a
    stack of `stack` models; model-steps per second of all together."""
    work_dir.mkdir(parents=True, exist_ok=True)
    go = work_dir / f"go_{size}_{count}_{stack}"
    procs, results = [], []
    for i in range(count):
        files = {name: work_dir / f"{name}_{size}_{count}_{stack}_{i}" for name in ("ready", "result")}
        results.append(files)
        cmd = [sys.executable, __file__, "worker", "--size", size, "--device", str(device), "--seed", str(i),
               "--crop-seconds", str(CROP_S), "--stack", str(stack),
               "--seconds", str(seconds), "--ready", str(files["ready"]), "--go", str(go), "--result", str(files["result"])]
        if data:
            cmd += ["--data", data]
        procs.append(subprocess.Popen(cmd))
    deadline = time.time() + 180
    while not all(f["ready"].exists() for f in results):
        if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            return {"error": "workers did not start"}
        time.sleep(0.05)
    go.touch()
    for p in procs:
        p.wait(timeout=seconds + 120)
    rows = [json.loads(f["result"].read_text()) for f in results]
    steps_per_s = sum(r["steps"] / r["seconds"] for r in rows)
    return {"processes": count, "stack": stack, "model_steps_per_s": steps_per_s,
            "ms_per_model_step": 1000 / steps_per_s}


# ---- loss curves ------------------------------------------------------------------------------


class Float64ConvTasNet(ConvTasNet):
    def forward(self, wav):
        return super().forward(wav.double())


def curves_section(speakers, device, checkpoint, steps, out_dir: Path, compiled_curves=False) -> dict:
    """Per-step losses and validation SDRs of 2 models over `steps` steps, the
    same batches for every variant: plain fp32 (training.train), plain float64,
    stacked fp32 / tf32 / bf16, and on a GPU stacked tf32 with the fused kernels,
    eager and as a CUDA graph (the workflow's stacked jobs)."""
    if checkpoint:
        start_model, _ = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(0)
        start_model = build_model("tiny")
    # model 0 at lr 1e-3 (the demo's recipe, large updates: a stress test), model 1 at the paper's 1e-6
    recipes = [recipe(lr=lr, seed=k, max_steps=steps, val_every=1, patience=10**6) for k, lr in enumerate([1e-3, 1e-6])]
    data = [speakers[k % len(speakers)] for k in range(2)]
    val_sets = [[(p[0][: 2 * SAMPLE_RATE], p[1][: 2 * SAMPLE_RATE]) for p in _val_pairs(d, 1)] for d in data]
    histories = {}

    def plain(dtype_cls, dtype):
        runs = []
        for (speech, noises), val_pairs, r in zip(data, val_sets, recipes):
            model = dtype_cls(start_model.config).to(dtype)
            model.load_state_dict(start_model.state_dict())
            with precision_mode("fp32") if dtype == torch.float64 else _default_precision():
                runs.append(train(model, CropMixer(speech, noises, r), val_pairs, r, device).history)
        return runs

    started = time.perf_counter()
    histories["plain fp32 (training.train)"] = plain(ConvTasNet, torch.float32)
    histories["plain float64"] = plain(Float64ConvTasNet, torch.float64)
    variants = [(f"stacked {precision}", {"precision": precision}) for precision in ("fp32", "tf32", "bf16")]
    if compiled_curves:
        variants.append(("stacked tf32 compiled", {"precision": "tf32", "compile": True}))
    if fused_available(device):
        variants += [("stacked tf32 fused", {"precision": "tf32", "fused": True}),
                     ("stacked tf32 fused graph", {"precision": "tf32", "fused": True, "cuda_graph": True})]
    for name, options in variants:
        models = [copy.deepcopy(start_model) for _ in recipes]
        batches = CropMixerBatches([CropMixer(s, n, r) for (s, n), r in zip(data, recipes)], recipes, device)
        results = train_stacked(models, batches, StackedValidation(val_sets, device), recipes, device,
                                progress=False, **options)
        histories[name] = [r.history for r in results]
    reference = histories["plain float64"]
    baseline = histories["plain fp32 (training.train)"]
    summary = {"steps": steps, "models": 2, "seconds": time.perf_counter() - started,
               "init": "challenge tiny generalist" if checkpoint else "random init"}
    for name, runs in histories.items():
        summary[name] = {
            "max_rel_loss_diff_vs_float64": _max_rel(runs, reference, "train_loss"),
            "max_rel_loss_diff_vs_plain_fp32": _max_rel(runs, baseline, "train_loss"),
            "max_abs_val_sdr_diff_db_vs_plain_fp32": _max_abs(runs, baseline, "val_sdr_db"),
            "final_loss": [run[-1]["train_loss"] for run in runs],
        }
    _plot_curves(histories, out_dir / "loss_curves.png")
    return summary


class _default_precision:
    """The workflow's settings as they are (cuDNN TF32 on, matmul TF32 off by default)."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _series(run, key):
    return np.array([row[key] for row in run if row["step"] > 0 or key == "val_sdr_db"], dtype=np.float64)


def _max_rel(runs, reference, key) -> float:
    return float(max(np.max(np.abs(_series(a, key) - _series(b, key)) / np.abs(_series(b, key)))
                     for a, b in zip(runs, reference)))


def _max_abs(runs, reference, key) -> float:
    return float(max(np.max(np.abs(_series(a, key) - _series(b, key))) for a, b in zip(runs, reference)))


def _plot_curves(histories, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_diff) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5))
    reference = histories["plain float64"]
    for colour, (name, runs) in enumerate(histories.items()):
        for m, run in enumerate(runs):
            steps = np.array([row["step"] for row in run if row["step"] > 0])
            loss = _series(run, "train_loss")
            style = {"lw": 0.8, "alpha": 0.8, "color": f"C{colour}", "label": name if m == 0 else None}
            ax_loss.plot(steps, loss, **style)
            if name != "plain float64":
                rel = np.abs(loss - _series(reference[m], "train_loss")) / np.abs(_series(reference[m], "train_loss"))
                ax_diff.semilogy(steps, np.maximum(rel, 1e-9), **style)
    ax_loss.set_ylabel("training loss (-SDR, dB)")
    ax_loss.legend(fontsize=7)
    ax_loss.set_title(f"tiny ConvTasNet, batch {BATCH} x {CROP_S:g} s, the same batches for every variant"
                      " (2 models)", fontsize=9)
    ax_diff.set_ylabel("|loss - float64| / |float64|")
    ax_diff.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


# ---- evaluation ---------------------------------------------------------------------------


def eval_section(test_mixtures, device, sizes) -> dict:
    result = {}
    for size in sizes:
        torch.manual_seed(0)
        model = build_model(size).to(device).eval()
        with precision_mode("tf32"):
            one = timed(lambda net=model: [enhance(net, m, device) for m in test_mixtures], device, 1, 2.0, min_steps=2)
            many = timed(lambda net=model: enhance_many(net, test_mixtures, device), device, 1, 2.0, min_steps=2)
            singles = [enhance(model, m, device) for m in test_mixtures]
            batched = enhance_many(model, test_mixtures, device)
        diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in zip(singles, batched))
        result[size] = {"one_at_a_time_s": one, "batched_s": many, "speedup": one / many, "max_rel_diff": diff,
                        "mixtures": len(test_mixtures),
                        "audio_s": sum(m.size for m in test_mixtures) / SAMPLE_RATE}
        free_memory()
    return result


# ---- summary --------------------------------------------------------------------------------


def summarize(results: dict, steps_per_finetune: int) -> str:
    lines = ["| size | path | K or N | ms/step | model-steps/s | audio-s/s | fine-tunes/h | x baseline |",
             "|---|---|---|---|---|---|---|---|"]
    validations = steps_per_finetune / VAL_EVERY
    for size in results.get("baseline", {}):
        base = results["baseline"][size]
        base_rate = 1000 / base["ms_per_step"]
        base_ft_s = steps_per_finetune / base_rate + validations * base["val_s_one_model"]
        lines.append(_row(size, "baseline (one at a time)", 1, base["ms_per_step"], base_rate, 3600 / base_ft_s, 1.0))
        best = None
        for name, row in results.get("stacked", {}).get(size, {}).items():
            if "ms_per_step" in row:
                k = int(name.split()[0][1:])
                rate = 1000 * k / row["ms_per_step"]
                if best is None or rate > best[2]:
                    best = (name, k, rate, row)
        for name, row in [*results.get("graphs", {}).items(), *results.get("compiled", {}).items()]:
            if name.startswith(size + " ") and "ms_per_step" in row:
                k = int(name.split()[1][1:])
                rate = 1000 * k / row["ms_per_step"]
                if best is None or rate > best[2]:
                    best = (name, k, rate, row)
        if best:
            name, k, rate, row = best
            val_s = results.get("validation", {}).get(size, {})
            val_per_model = val_s["val_s_all_models"] / val_s["K"] if val_s else base["val_s_one_model"]
            ft_s = steps_per_finetune / rate + validations * val_per_model
            lines.append(_row(size, f"stacked ({name})", k, row["ms_per_step"], rate, 3600 / ft_s, base_ft_s / ft_s))
        for name, row in results.get("multiprocess", {}).items():
            if name.startswith(size) and "model_steps_per_s" in row:
                rate = row["model_steps_per_s"]
                ft_s = steps_per_finetune / rate + validations * base["val_s_one_model"]
                path = f"processes, each a stack of {row['stack']}" if row.get("stack") else "processes"
                lines.append(_row(size, path, row["processes"], 1000 / rate * row["processes"], rate,
                                  3600 / ft_s, base_ft_s / ft_s))
    return "\n".join(lines)


def _row(size, path, k, ms, rate, per_hour, ratio) -> str:
    audio = rate * BATCH * CROP_S
    return f"| {size} | {path} | {k} | {ms:.1f} | {rate:.1f} | {audio:.0f} | {per_hour:.1f} | {ratio:.2f} |"


def run(args) -> None:
    global CROP_S, NUM_VAL
    CROP_S, NUM_VAL = args.crop_seconds, args.num_val
    device = torch.device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget_s
    speakers, test_mixtures, data_note = load_data(args.data)
    if args.smoke:
        test_mixtures = [m[:SAMPLE_RATE] for m in test_mixtures[:6]]
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "data": data_note,
        "command": " ".join(sys.argv),
        "recipe": f"batch {BATCH} x {CROP_S:g} s crops, Adam, clip {GRAD_CLIP_NORM}",
    }
    sections = [s.strip() for s in args.sections.split(",")]
    target_s = 0.3 if args.smoke else args.target_s

    def save():
        (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))

    def section(name, fn):
        if name not in sections:
            return
        if time.time() > deadline:
            results[name] = {"error": "skipped: time budget"}
            return
        started = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - a section that fails is recorded, the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"[{name}: {time.perf_counter() - started:.0f} s] {json.dumps(results[name], default=float)[:1500]}",
              flush=True)
        save()

    section("profile", lambda: profile_section(speakers, device, out_dir, args.profile_k))
    section("baseline", lambda: baseline_section(speakers, device, args.sizes, target_s))
    section("train_check", lambda: train_check_section(speakers, device, 10 if args.smoke else 60))
    section("stacked", lambda: stacked_section(speakers, device, args.sizes, args.ks, args.precisions, target_s,
                                               deadline - args.reserve_s))
    section("graphs", lambda: graph_section(speakers, device, [_config(c) for c in args.graph], target_s))
    section("variants", lambda: variant_section(speakers, device, args.variants, target_s))
    section("validation", lambda: validation_section(speakers, device, args.sizes, args.val_k))
    section("trainer", lambda: trainer_section(speakers, device, [tuple(c.split(":")[:2]) for c in args.trainer],
                                               args.trainer_steps))
    section("multiprocess", lambda: {
        f"{size} N{n}" + (f" K{k[0]}" if k else ""): multiprocess_run(
            size, int(n), args.data, device, args.proc_seconds, out_dir / "mp", int(k[0]) if k else 0)
        for size, n, *k in (c.split(":") for c in args.multiprocess)
    })
    section("compiled", lambda: compiled_section(speakers, device, args.compiled, target_s, args.compile_mode))
    section("curves", lambda: curves_section(speakers, device, args.checkpoint, args.curve_steps, out_dir,
                                             args.compiled_curves))
    section("eval", lambda: eval_section(test_mixtures, device, args.sizes))
    results["summary_steps_per_finetune"] = args.steps_per_finetune
    save()
    print(f"\n{results['device']}, torch {results['torch']}, {results['date']}, data: {data_note}")
    print(f"fine-tunes/h assume {args.steps_per_finetune} steps and a {NUM_VAL}-utterance validation "
          f"every {VAL_EVERY} steps\n")
    print(summarize(results, args.steps_per_finetune))


def _config(text: str):
    size, k, precision = text.split(":")[:3]
    return size, int(k), precision


def graph_config(text: str) -> str:
    size, k, precision = text.split(":")
    if size not in SIZES or precision not in ("fp32", "tf32", "bf16") or int(k) < 1:
        raise argparse.ArgumentTypeError(f"expected size:K:precision, got {text!r}")
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack the demo world into an npz")
    p.add_argument("--demo-dir", default="data/demo")
    p.add_argument("--out", required=True)
    p = sub.add_parser("run", help="measure")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None, help="npz from `pack` (default: synthetic signals)")
    p.add_argument("--checkpoint", default=None, help="tiny generalist for the loss curves (default: random init)")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    p.add_argument("--ks", nargs="+", type=int, default=[8, 16, 32, 64])
    p.add_argument("--precisions", nargs="+", default=["fp32", "tf32"], choices=["fp32", "tf32", "bf16"])
    p.add_argument("--graph", nargs="*", type=graph_config, default=[], help="size:K:precision to run as a CUDA graph")
    p.add_argument("--variants", nargs="*", default=[], help="size:K:precision:grouped_conv|cudnn_benchmark")
    p.add_argument("--multiprocess", nargs="*", default=["tiny:4", "tiny:8", "medium:8"],
                   help="size:N runs of N plain trainer processes sharing the device (size:N:K: N processes "
                        "each stepping a stack of K models)")
    p.add_argument("--trainer", nargs="*", default=["tiny:16"], help="size:K runs of train_stacked end to end")
    p.add_argument("--compiled", nargs="*", type=graph_config, default=[],
                   help="size:K:precision to run with torch.compile (section compiled)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: its default)")
    p.add_argument("--compiled-curves", action="store_true", help="add stacked tf32 compiled to the loss curves")
    p.add_argument("--trainer-steps", type=int, default=2 * VAL_EVERY)
    p.add_argument("--proc-seconds", type=float, default=10.0)
    p.add_argument("--profile-k", type=int, default=16)
    p.add_argument("--val-k", type=int, default=16)
    p.add_argument("--curve-steps", type=int, default=200)
    p.add_argument("--steps-per-finetune", type=int, default=1200)
    p.add_argument("--target-s", type=float, default=1.5, help="seconds timed per variant")
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument("--reserve-s", type=float, default=150.0, help="time kept for the sections after the sweep")
    p.add_argument("--sections",
                   default="profile,baseline,train_check,stacked,graphs,variants,compiled,validation,trainer,multiprocess,curves,eval")
    p.add_argument("--smoke", action="store_true", help="short timings (a CPU check that everything runs)")
    p.add_argument("--crop-seconds", type=float, default=CROP_S)
    p.add_argument("--num-val", type=int, default=NUM_VAL, help="validation utterances (3-9 s) per model")
    p = sub.add_parser("worker", help="one plain trainer process (for the multi-process run)")
    p.add_argument("--size", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--stack", type=int, default=0, help="K > 0: a stack of K models instead of one plain trainer")
    p.add_argument("--crop-seconds", type=float, default=CROP_S)
    p.add_argument("--ready", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    {"pack": pack, "run": run, "worker": worker}[args.command](args)


if __name__ == "__main__":
    main()
