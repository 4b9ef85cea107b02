"""TTS scoring speed: seconds of each score_tts component per second of synthesized speech.

    python bench/scoring/rate.py --device cuda [--num-utterances 32] [--sizes large-v3]
        [--mos utmos dnsmos distillmos] [--budget-s 300] [--out-json FILE]
    python bench/scoring/rate.py --device cuda --num-utterances 64 --whisper-batch-sizes 16 32 64

The second form times Whisper alone at each batch size (the first is the baseline) and prints the
speed-up of each over it.

The components are those of workflow_scripts/score_tts.py, loaded and run by
the workflow's own code on ~32 synthetic voiced clips of 3-10 s (the voice-like
signal of bench/tts/common.py) against an 8 s enrollment clip:

- ASR: a Whisper of the large-v3 dimensions (128 mels, 32+32 layers of width
  1280, 20 heads, 51866 tokens, 448 text positions) with random weights,
  written as the released checkpoints are (fp16 on a GPU) by
  workflow_scripts/testing/tiny_models.py and loaded by `WhisperTranscriber`
  from that file; clips decoded in batches of `WHISPER_BATCH_SIZE` as `transcribe_all` does;
- SECS: Resemblyzer (its own released weights) and the speechbrain x-vector
  (spkrec-xvect-voxceleb's sizes: TDNN 512x4 + 1500, 7205 training speakers,
  random weights, in a local model folder), each through
  `similarity_to_enrollment` as score_tts calls it;
- MOS (optional, `--mos`): UTMOS22 (random weights of the real network),
  DNSMOS and DistillMOS (the weights their packages ship).

Random Whisper weights decode random tokens: greedy decoding runs until it
happens to pick the end token or reaches the 224-token limit, where speech of
3-10 s gives some 10-40 tokens. So the ASR time is reported as measured, per
decoded token, and split into the encoder (per 30 s window, independent of
the text) and the decoder (per step of a batch); a second pass caps decoding
at the token count the sentences of workflow_scripts/data/sentences.txt would
need (their Whisper tokens plus 2 timestamps) to measure a speech-like length
directly. A random model's windows mostly fail the checks after which
`transcribe` would decode them again (compression ratio, log-probability,
final timestamp): in the passes these hand-offs are counted and skipped, and
at the end `--fallback-clips` clips are timed through `whisper.transcribe`
(stopped when the budget is spent), as the cost of a clip that real weights
would rarely send there. `--sizes tiny` runs the tests' tiny Whisper (a check
on a CPU). Each component starts only if the `--budget-s` seconds are not
spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.concurrent_workers import add_worker_args
from bench.tts.common import first_sentences, synchronize, voiced_clip
from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.scoring.asr import WHISPER_BATCH_SIZE, WhisperTranscriber
from workflow_scripts.scoring.speaker_similarity import (
    SpeakerEncoder,
    load_xvector_encoder,
    similarity_to_enrollment,
)
from workflow_scripts.testing.tiny_models import build_tiny_whisper, build_tiny_xvector

LARGE_V3_DIMS = {"n_mels": 128, "n_audio_ctx": 1500, "n_audio_state": 1280, "n_audio_head": 20,
                 "n_audio_layer": 32, "n_vocab": 51866, "n_text_ctx": 448, "n_text_state": 1280,
                 "n_text_head": 20, "n_text_layer": 32}


def test_clips(count: int, seed: int = 1) -> list[np.ndarray]:
    """`count` voiced clips of 3-10 s (evenly spread lengths, shuffled), each from its own seed."""
    lengths_s = np.random.default_rng(seed).permutation(np.linspace(3.0, 10.0, count))
    return [voiced_clip(float(length), SAMPLE_RATE, seed=100 + i) for i, length in enumerate(lengths_s)]


def build_whisper(folder: Path, sizes: str, device: str) -> Path:
    """The random Whisper checkpoint (large-v3 dimensions in fp16 on a GPU, as released; or tiny)."""
    import torch
    from whisper.model import ModelDimensions

    if sizes == "tiny":
        return build_tiny_whisper(folder, "tiny-random.pt")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return build_tiny_whisper(folder, "large-v3-random.pt", dims=ModelDimensions(**LARGE_V3_DIMS))
    finally:
        torch.set_default_dtype(previous)


def speech_token_counts(transcriber, texts: list[str]) -> list[int]:
    """Tokens Whisper would decode for each text as one segment: its text tokens and 2 timestamps."""
    return [len(transcriber.tokenizer.encode(" " + text)) + 2 for text in texts]


class WhisperProbe:
    """Times the batched decodes of a WhisperTranscriber; counts (and skips) its hand-offs to `transcribe`."""

    def __init__(self, transcriber: WhisperTranscriber, device: str) -> None:
        self.transcriber, self.device = transcriber, device
        self.decodes, self.handed_over = [], []
        self.decode_function, self.transcribe_function = transcriber.model.decode, transcriber.transcribe
        transcriber.model.decode = self.decode
        transcriber.transcribe = self.skip

    def decode(self, mel, options):
        synchronize(self.device)
        start = time.perf_counter()
        results = self.decode_function(mel, options)
        synchronize(self.device)
        self.decodes.append({"windows": len(results), "s": time.perf_counter() - start,
                             "tokens": [len(r.tokens) for r in results]})
        return results

    def skip(self, audio):
        self.handed_over.append(audio.size / SAMPLE_RATE)
        return ""

    def time_transcribe(self, audio, limit_s: float) -> dict:
        """One clip through `whisper.transcribe` (all its windows and temperatures), stopped after `limit_s`."""
        def stop(signum, frame):
            raise TimeoutError

        self.transcriber.model.decode = self.decode_function
        previous = signal.signal(signal.SIGALRM, stop)
        signal.alarm(max(int(limit_s), 1))
        start = time.perf_counter()
        try:
            text, finished = self.transcribe_function(audio), True
        except TimeoutError:
            text, finished = "", False
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            self.transcriber.model.decode = self.decode
        synchronize(self.device)
        return {"audio_s": audio.size / SAMPLE_RATE, "s": time.perf_counter() - start, "finished": finished,
                "words": len(text.split())}

    def run(self, audios: list[np.ndarray]) -> dict:
        """`transcribe_all`'s batching over `audios`; the batched pass and the hand-offs apart."""
        self.decodes, self.handed_over = [], []
        batch_size = self.transcriber.batch_size
        synchronize(self.device)
        start = time.perf_counter()
        for first in range(0, len(audios), batch_size):
            self.transcriber.transcribe_batch(audios[first:first + batch_size])
        synchronize(self.device)
        total_s = time.perf_counter() - start
        tokens = [n for d in self.decodes for n in d["tokens"]]
        steps = sum(max(d["tokens"]) + 1 for d in self.decodes)  # the end token is a step too
        return {"batched_pass_s": total_s, "decode_s": sum(d["s"] for d in self.decodes),
                "tokens_per_window_mean": float(np.mean(tokens)), "tokens_per_window_max": max(tokens),
                "tokens_total": sum(tokens), "decode_steps": steps, "batches": len(self.decodes),
                "handed_to_transcribe": len(self.handed_over)}


def encoder_seconds(transcriber: WhisperTranscriber, device: str, windows: int, repeats: int = 3) -> float:
    """Seconds of the audio encoder for a batch of `windows` 30 s windows (fp16 on a GPU), best of `repeats`."""
    import torch
    from whisper.audio import N_FRAMES

    model = transcriber.model
    dtype = torch.float16 if transcriber.fp16 else torch.float32
    mel = torch.zeros(windows, model.dims.n_mels, N_FRAMES, device=device, dtype=dtype)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            model.embed_audio(mel)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return best


def timed_call(device: str, function, *args):
    synchronize(device)
    start = time.perf_counter()
    out = function(*args)
    synchronize(device)
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", choices=["large-v3", "tiny"], default="large-v3")
    parser.add_argument("--num-utterances", type=int, default=32)
    parser.add_argument("--fallback-clips", type=int, default=1,
                        help="clips timed through whisper.transcribe at the end (in the passes, hand-offs "
                             "are counted and skipped)")
    parser.add_argument("--mos", nargs="*", default=["utmos", "dnsmos", "distillmos"],
                        choices=["utmos", "dnsmos", "distillmos"])
    parser.add_argument("--no-xvector", action="store_true", help="leave out the x-vector SECS")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="start no further component after this many seconds from the start")
    parser.add_argument("--out-json", type=Path, default=None)
    add_worker_args(parser, "each scores the same clips with Whisper, decoding capped at the sentences' token "
                            "count, and Resemblyzer SECS")
    parser.add_argument("--whisper-checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--whisper-batch-sizes", type=int, nargs="+", default=None,
                        help="only Whisper, decoding capped at the sentences' token count, at each batch size "
                             "(the first is the baseline), repeated --repeats times in turn")
    parser.add_argument("--repeats", type=int, default=3, help="passes per batch size (--whisper-batch-sizes)")
    args = parser.parse_args(argv)
    if args.whisper_batch_sizes:
        return batch_sizes(args)
    if args.processes:
        return concurrent(args)
    if args.ready:
        return worker(args)

    import torch
    import whisper

    started = time.perf_counter()

    def budget_left() -> bool:
        return time.perf_counter() - started < args.budget_s

    on_gpu = args.device.startswith("cuda")
    audios = test_clips(args.num_utterances)
    enrollment = voiced_clip(8.0, SAMPLE_RATE, seed=0)
    audio_s = sum(a.size for a in audios) / SAMPLE_RATE
    sentences = first_sentences(args.num_utterances)
    result = {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({platform.machine()})",
              "torch": torch.__version__, "openai_whisper": whisper.__version__, "whisper_sizes": args.sizes,
              "utterances": len(audios), "audio_s": audio_s,
              "clip_s": [round(a.size / SAMPLE_RATE, 2) for a in audios], "components": {}, "skipped": []}
    components = result["components"]

    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        tmp = Path(tmp)
        # ---- ASR: Whisper -------------------------------------------------------------
        checkpoint, build_s = timed_call(args.device, build_whisper, tmp / "whisper", args.sizes, args.device)
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        transcriber, load_s = timed_call(args.device, WhisperTranscriber, str(checkpoint), tmp / "models",
                                         args.device, WHISPER_BATCH_SIZE, True)
        asr = {"checkpoint_mb": checkpoint.stat().st_size / 2**20, "build_s": build_s, "load_s": load_s,
               "batch_size": transcriber.batch_size, "fp16": transcriber.fp16,
               "parameters_m": sum(p.numel() for p in transcriber.model.parameters()) / 1e6}
        checkpoint.unlink()
        probe = WhisperProbe(transcriber, args.device)
        probe.run(audios[:2])  # warm-up: kernels, caches
        asr["measured"] = probe.run(audios)
        asr["measured"]["rtf"] = asr["measured"]["batched_pass_s"] / audio_s
        asr["measured"]["ms_per_token"] = 1000 * asr["measured"]["batched_pass_s"] / asr["measured"]["tokens_total"]
        encoder_s = encoder_seconds(transcriber, args.device, transcriber.batch_size)
        asr["encoder_s_per_window"] = encoder_s / transcriber.batch_size
        windows_full = asr["measured"]["batches"]  # batches of batch_size windows (the last may be smaller)
        asr["decoder_ms_per_step"] = 1000 * max(asr["measured"]["decode_s"] - windows_full * encoder_s, 0.0) / (
            asr["measured"]["decode_steps"])
        speech_tokens = speech_token_counts(transcriber, sentences)
        sample_len = min(max(speech_tokens), transcriber.model.dims.n_text_ctx // 2)
        asr["speech_tokens_per_utterance"] = {"mean": float(np.mean(speech_tokens)), "max": max(speech_tokens)}
        if budget_left():
            options = transcriber.options
            transcriber.options = dataclasses.replace(options, sample_len=sample_len)
            asr["capped"] = probe.run(audios)
            transcriber.options = options
            asr["capped"]["sample_len"] = sample_len
            asr["capped"]["rtf"] = asr["capped"]["batched_pass_s"] / audio_s
        else:
            result["skipped"].append("ASR pass capped at speech-like token counts (budget)")
        if on_gpu:
            asr["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        components["asr"] = asr

        # ---- SECS ------------------------------------------------------------------------
        encoder, load_s = timed_call(args.device, SpeakerEncoder, args.device)
        similarity_to_enrollment(encoder, enrollment, audios[:2], desc="warm-up")
        _, secs_s = timed_call(args.device, similarity_to_enrollment, encoder, enrollment, audios)
        components["secs_resemblyzer"] = {"load_s": load_s, "s": secs_s, "rtf": secs_s / audio_s}
        if args.no_xvector:
            result["skipped"].append("x-vector SECS (--no-xvector)")
        elif budget_left():
            folder, build_s = timed_call("cpu", build_tiny_xvector, tmp / "xvector", 0, False)
            (encoder, reason), load_s = timed_call(args.device, load_xvector_encoder, folder, tmp / "models",
                                                   args.device)
            if encoder is None:
                raise RuntimeError(f"x-vector model {folder} did not load: {reason}")
            similarity_to_enrollment(encoder, enrollment, audios[:2], desc="warm-up")
            _, secs_s = timed_call(args.device, similarity_to_enrollment, encoder, enrollment, audios)
            components["secs_xvector"] = {"build_s": build_s, "load_s": load_s, "s": secs_s,
                                          "rtf": secs_s / audio_s}
        else:
            result["skipped"].append("x-vector SECS (budget)")

        # ---- MOS ---------------------------------------------------------------------------
        for name in args.mos:
            if not budget_left():
                result["skipped"].append(f"MOS {name} (budget)")
                continue
            from workflow_scripts.scoring.mos import UTMOS_HUB_REPO, load_predictors

            source = UTMOS_HUB_REPO  # used by utmos alone
            if name == "utmos":  # the UTMOS22 network with random weights, as a local weights folder
                from utmos_pytorch.utmos_torch import UTMOSModel

                torch.manual_seed(0)
                (tmp / "utmos").mkdir(exist_ok=True)
                torch.save(UTMOSModel().state_dict(), tmp / "utmos" / "utmos_state_dict.pt")
                source = str(tmp / "utmos")
            (predictors, reasons), load_s = timed_call(args.device, load_predictors, [name], source,
                                                       tmp / "models", args.device)
            if name not in predictors:
                result["skipped"].append(f"MOS {name}: {reasons.get(name)}")
                continue
            predictors[name].predict(audios[:2])  # warm-up
            _, mos_s = timed_call(args.device, predictors[name].predict, audios)
            components[f"mos_{name}"] = {"load_s": load_s, "s": mos_s, "rtf": mos_s / audio_s}
            del predictors
        save(result, args.out_json)

        # ---- clips handed to whisper.transcribe (last: its time with random weights is open-ended) ----
        asr["transcribe_timed"] = []
        for index in range(args.fallback_clips):
            left_s = args.budget_s - (time.perf_counter() - started)
            if left_s < 10:
                result["skipped"].append("timing clips through whisper.transcribe (budget)")
                break
            asr["transcribe_timed"].append(probe.time_transcribe(audios[index], left_s))
    report(result)
    save(result, args.out_json)
    return 0


def batch_sizes(args) -> int:
    """Whisper's capped batched pass over the same clips at each batch size, in turn, `repeats` times;
    the best pass of each, and its speed-up over the first size (the baseline)."""
    import torch

    audios = test_clips(args.num_utterances)
    audio_s = sum(a.size for a in audios) / SAMPLE_RATE
    sentences = first_sentences(args.num_utterances)
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        checkpoint = build_whisper(Path(tmp) / "whisper", args.sizes, args.device)
        transcriber = WhisperTranscriber(str(checkpoint), Path(tmp) / "models", args.device, WHISPER_BATCH_SIZE, True)
    sample_len = min(max(speech_token_counts(transcriber, sentences)), transcriber.model.dims.n_text_ctx // 2)
    transcriber.options = dataclasses.replace(transcriber.options, sample_len=sample_len)
    probe = WhisperProbe(transcriber, args.device)
    passes = {size: [] for size in args.whisper_batch_sizes}
    peak = {}
    for repeat in range(args.repeats + 1):  # the first round warms up every size
        for size in args.whisper_batch_sizes:
            transcriber.batch_size = size
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            run = probe.run(audios if repeat else audios[:size])
            if repeat:
                passes[size].append(run["batched_pass_s"])
                if args.device.startswith("cuda"):
                    peak[size] = torch.cuda.max_memory_allocated() / 2**30
    base = min(passes[args.whisper_batch_sizes[0]])
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"Whisper {args.sizes} ({device}), {len(audios)} clips of 3-10 s ({audio_s:.0f} s), decoding capped at "
          f"{sample_len} tokens, best of {args.repeats} passes per batch size, sizes taken in turn")
    print("| batch size | pass (s) | s per utterance | speed-up over batch "
          f"{args.whisper_batch_sizes[0]} | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|")
    rows = []
    for size, times in passes.items():
        best = min(times)
        rows.append({"batch_size": size, "passes_s": times, "best_s": best, "s_per_utterance": best / len(audios),
                     "speedup": base / best, "peak_gpu_gib": peak.get(size)})
        print(f"| {size} | {best:.2f} | {best / len(audios):.4f} | {base / best:.2f}x | "
              + (f"{peak[size]:.1f} |" if size in peak else "- |"))
    save({"device": device, "utterances": len(audios), "audio_s": audio_s, "sample_len": sample_len,
          "rows": rows}, args.out_json)
    return 0


def worker(args) -> int:
    """One scoring process of a concurrent run: Whisper (capped decoding) and Resemblyzer SECS."""
    import torch

    from bench.concurrent_workers import wait_for_go

    audios = test_clips(args.num_utterances)
    enrollment = voiced_clip(8.0, SAMPLE_RATE, seed=0)
    sentences = first_sentences(args.num_utterances)
    with tempfile.TemporaryDirectory(prefix="scoring-worker-") as tmp:
        transcriber = WhisperTranscriber(str(args.whisper_checkpoint), Path(tmp), args.device, WHISPER_BATCH_SIZE,
                                         True)
    sample_len = min(max(speech_token_counts(transcriber, sentences)), transcriber.model.dims.n_text_ctx // 2)
    transcriber.options = dataclasses.replace(transcriber.options, sample_len=sample_len)
    probe = WhisperProbe(transcriber, args.device)
    encoder = SpeakerEncoder(args.device)
    probe.run(audios[:2])  # warm-up
    similarity_to_enrollment(encoder, enrollment, audios[:2], desc="warm-up")
    wait_for_go(args.ready, args.go)
    result = {"window_start": time.time()}
    asr = probe.run(audios)
    similarity_to_enrollment(encoder, enrollment, audios)
    synchronize(args.device)
    result.update(window_end=time.time(), audio_s=sum(a.size for a in audios) / SAMPLE_RATE, asr=asr,
                  sample_len=sample_len)
    if args.device.startswith("cuda"):
        result["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    save(result, args.out_json)
    return 0


def concurrent(args) -> int:
    """For each N, N scoring workers started together (bench/concurrent_workers.py)."""
    from bench.concurrent_workers import run_counts

    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        checkpoint = build_whisper(Path(tmp) / "whisper", args.sizes, args.device)
        command = [sys.executable, __file__, "--device", args.device, "--sizes", args.sizes,
                   "--num-utterances", str(args.num_utterances), "--whisper-checkpoint", str(checkpoint)]
        run_counts(command, args.processes, Path(tmp) / "runs", "audio_s", args.out_json)
    return 0


def save(result, out_json: Path | None) -> None:
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2))


def report(result: dict) -> None:
    """Print the results as Markdown."""
    components = result["components"]
    asr = components["asr"]
    measured = asr["measured"]
    print(f"device {result['device']}, torch {result['torch']}, openai-whisper {result['openai_whisper']}; "
          f"{result['utterances']} clips, {result['audio_s']:.1f} s of audio")
    print(f"Whisper ({result['whisper_sizes']}, {asr['parameters_m']:.0f} M parameters, checkpoint "
          f"{asr['checkpoint_mb']:.0f} MB): built {asr['build_s']:.1f} s, loaded {asr['load_s']:.1f} s; batch "
          f"{asr['batch_size']}, fp16 {asr['fp16']}"
          + (f"; peak GPU memory {asr['peak_gpu_mem_gb']:.2f} GiB" if "peak_gpu_mem_gb" in asr else ""))
    print(f"decoded tokens per 30 s window: mean {measured['tokens_per_window_mean']:.0f}, max "
          f"{measured['tokens_per_window_max']} (speech of these sentences: mean "
          f"{asr['speech_tokens_per_utterance']['mean']:.0f}, max {asr['speech_tokens_per_utterance']['max']}); "
          f"encoder {1000 * asr['encoder_s_per_window']:.1f} ms per window, decoder "
          f"{asr['decoder_ms_per_step']:.1f} ms per step of a batch; {measured['ms_per_token']:.2f} ms per "
          f"decoded token over the batched pass")
    timed = asr.get("transcribe_timed", [])
    print(f"{measured['handed_to_transcribe']} of {result['utterances']} clips would go on to whisper.transcribe"
          + ("; timed there: " + ", ".join(f"{f['s']:.1f} s for a {f['audio_s']:.1f} s clip"
                                           + ("" if f["finished"] else " (stopped, unfinished)") for f in timed)
             if timed else ""))
    print("| component | seconds | seconds per audio second |")
    print("|---|---|---|")
    print(f"| ASR batched pass, random tokens ({measured['tokens_per_window_mean']:.0f} per window) | "
          f"{measured['batched_pass_s']:.2f} | {measured['rtf']:.4f} |")
    if "capped" in asr:
        capped = asr["capped"]
        print(f"| ASR batched pass, capped at {capped['sample_len']} tokens "
              f"({capped['tokens_per_window_mean']:.0f} per window) | {capped['batched_pass_s']:.2f} | "
              f"{capped['rtf']:.4f} |")
    others = [(k, v) for k, v in components.items() if k != "asr"]
    for name, c in others:
        print(f"| {name} | {c['s']:.2f} | {c['rtf']:.4f} |")
    secs = sum(c["rtf"] for k, c in others if k.startswith("secs"))
    mos = sum(c["rtf"] for k, c in others if k.startswith("mos"))
    asr_rtf = asr["capped"]["rtf"] if "capped" in asr else measured["rtf"]
    print(f"| ASR (speech-like tokens) + SECS | | {asr_rtf + secs:.4f} |")
    if mos:
        print(f"| ASR (speech-like tokens) + SECS + MOS | | {asr_rtf + secs + mos:.4f} |")
    for skipped in result["skipped"]:
        print(f"skipped: {skipped}")


if __name__ == "__main__":
    sys.exit(main())
