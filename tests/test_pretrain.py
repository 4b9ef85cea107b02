"""Pre-training at scale: crops read from disk, held-out validation noises, SI-SDRi validation.

Tiny pools are written with soundfile in a temporary folder: speech-like harmonic
signals (16-bit FLAC and float WAV, one stereo file, one shorter than a crop, one
silent), training noises and validation noises.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from tqdm import tqdm

from workflow_scripts import pretrain
from workflow_scripts.files.audio import AudioError, read_audio
from workflow_scripts.model.convtasnet import build_model, load_checkpoint
from workflow_scripts.scoring.metrics import si_sdr_db
from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.training.data import AudioFiles, CropMixer, load_noises, validation_set
from workflow_scripts.training.loop import LoopState, cpu_state, evaluate_and_check_stop, train, validation_scorer
from workflow_scripts.training.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


def voiced(num_samples: int, f0_hz: float, seed: int) -> np.ndarray:
    """A harmonic signal with a syllable-rate envelope, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = f0_hz * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    signal = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    signal = signal * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2 + 0.01 * rng.standard_normal(num_samples)
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """speech/ (8 utterances), noises/ (3) and val_noises/ (2), as prepare_pretrain_pool lays them out."""
    root = tmp_path_factory.mktemp("pool")
    speech, rows = root / "speech", []
    speech.mkdir()
    lengths_s = [1.3, 0.2, 2.1, 0.9, 1.7, 1.1, 0.8, 1.5]  # utt01: shorter than a 0.25 s crop (padded)
    for i, seconds in enumerate(lengths_s):
        audio = voiced(int(seconds * SAMPLE_RATE), 110 + 20 * i, seed=i)
        name = f"utt{i:02d}.flac" if i % 2 == 0 else f"utt{i:02d}.wav"
        if i == 3:  # a stretch of digital silence: crops inside it are redrawn
            audio[: 3 * SAMPLE_RATE // 4] = 0.0
        if i == 5:  # stereo: averaged to mono, as read_audio does
            audio = np.stack([audio, 0.5 * audio[::-1]], axis=1)
        sf.write(speech / name, audio, SAMPLE_RATE, subtype="PCM_16" if name.endswith("flac") else "FLOAT")
        rows.append(
            {"utt_id": f"utt{i:02d}", "path": name, "text": "", "duration_s": seconds, "speaker": i // 2}
        )
    pd.DataFrame(rows).to_csv(speech / "manifest.csv", index=False)
    rng = np.random.default_rng(7)
    for folder, noises in [
        ("noises", {"white": 1.5, "short": 0.1, "pink": 0.7}),
        ("val_noises", {"hum": 0.6, "buzz": 1.2}),
    ]:
        (root / folder).mkdir()
        for name, seconds in noises.items():
            audio = rng.standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.3
            if folder == "val_noises":  # tonal, unlike the training noises
                t = np.arange(audio.size) / SAMPLE_RATE
                audio = (0.3 * np.sin(2 * np.pi * (50 if name == "hum" else 900) * t)).astype(np.float32)
            sf.write(root / folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        table = pd.DataFrame({"noise_id": list(noises), "path": [f"{n}.wav" for n in noises], "kind": "test"})
        table.to_csv(root / folder / "noises.csv", index=False)
    return root


def in_memory(paths) -> list[np.ndarray]:
    return [read_audio(p) for p in paths]


def test_lazy_crops_equal_in_memory_crops(pool):
    speech_paths = read_speech_folder(pool / "speech")["wav"]
    noise_paths = [str(p) for p in sorted((pool / "noises").glob("*.wav"))]
    recipe = Recipe(batch_size=5, crop_seconds=0.25, snr_low_db=-5, snr_high_db=5, peak_normalize=True)
    memory = CropMixer(in_memory(speech_paths), in_memory(noise_paths), recipe)
    disk = CropMixer(AudioFiles(speech_paths), AudioFiles(noise_paths, threads=2), recipe, read_threads=3)
    assert disk.utterances.lengths.tolist() == [u.size for u in memory.utterances]
    draws = []
    draw = disk._draw
    disk._draw = lambda rng: draws.append(draw(rng)) or draws[-1]
    rng_memory, rng_disk = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(6):
        for a, b in zip(memory.batch(rng_memory, 5), disk.batch(rng_disk, 5), strict=True):
            np.testing.assert_array_equal(a, b)
    assert rng_memory.bit_generator.state == rng_disk.bit_generator.state
    assert len(draws) > 30, "no silent crop was redrawn: the pool no longer tests that path"
    assert {d[0] for d in draws} >= {1, 3, 5} and {d[2] for d in draws} == {0, 1, 2}
    # the validation set mixes the same way whether its noises are on disk or in memory
    utterances = in_memory(speech_paths[:4])
    for (m_a, c_a), (m_b, c_b) in zip(
        validation_set(utterances, in_memory(noise_paths), 3, True),
        validation_set(utterances, AudioFiles(noise_paths), 3, True),
        strict=True,
    ):
        np.testing.assert_array_equal(m_a, m_b)
        np.testing.assert_array_equal(c_a, c_b)


def test_audio_files_refuse_other_rates_by_name(tmp_path):
    sf.write(tmp_path / "a.wav", voiced(8000, 100, 0), 8000)
    with pytest.raises(AudioError, match=r"a\.wav: 8000 Hz"):
        AudioFiles([tmp_path / "a.wav"])
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"empty\.wav: audio file is empty"):
        AudioFiles([tmp_path / "empty.wav"])


class Lookup(torch.nn.Module):
    """A stand-in model: the output stored for each validation mixture (by length)."""

    def __init__(self, outputs: dict[int, np.ndarray]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.outputs = outputs

    def forward(self, x):
        return torch.from_numpy(self.outputs[x.shape[-1]])[None].to(x) + self.weight


def test_si_sdri_picks_the_best_step_by_si_sdri(pool):
    speech_paths = read_speech_folder(pool / "speech")["wav"]
    utterances = [u for u in in_memory(speech_paths) if u.size > 4000][:4]
    _, noises = load_noises(pool / "val_noises")
    pairs = validation_set(utterances, noises, seed=0)
    # a little of the noise at full level: good SDR; a quiet copy of the clean speech
    # with a little noise: poor SDR (wrong level), better SI-SDR
    loud = Lookup({m.size: c + 0.3 * (m - c) for m, c in pairs})
    quiet = Lookup({m.size: 0.2 * (c + 0.05 * (m - c)) for m, c in pairs})
    cpu = torch.device("cpu")
    sdr, si_sdri = validation_scorer(pairs, "sdr", cpu), validation_scorer(pairs, "si_sdri", cpu)
    assert sdr(loud) > sdr(quiet) and si_sdri(quiet) > si_sdri(loud)
    by_hand = np.mean([si_sdr_db(c, quiet.outputs[m.size]) - si_sdr_db(c, m) for m, c in pairs])
    assert si_sdri(quiet) == pytest.approx(by_hand, abs=1e-3)

    # step 0 gave `loud`, step 1 gives `quiet`: the metric decides which step is kept
    for metric, column, best_step in [("sdr", "val_sdr_db", 0), ("si_sdri", "val_si_sdri_db", 1)]:
        score = validation_scorer(pairs, metric, cpu)
        loop = LoopState(step=1, history=[], best_val=score(loud), best_state=cpu_state(loud), losses=[0.0])
        evaluate_and_check_stop(quiet, score, loop, Recipe(val_metric=metric), tqdm(disable=True))
        assert loop.best_step == best_step, metric
        assert list(loop.history[-1]) == ["step", "train_loss", column, "best"]


def test_training_on_si_sdri_keeps_the_best_si_sdri_state(pool, one_thread):
    speech_paths = read_speech_folder(pool / "speech")["wav"]
    _, val_noises = load_noises(pool / "val_noises")
    val_pairs = validation_set(in_memory(speech_paths[-2:]), val_noises, seed=0)
    recipe = Recipe(
        batch_size=2,
        crop_seconds=0.25,
        lr=3e-3,
        max_steps=6,
        val_every=2,
        patience=9,
        seed=1,
        val_metric="si_sdri",
    )
    mixer = CropMixer(
        AudioFiles(speech_paths[:-2]), AudioFiles(sorted((pool / "noises").glob("*.wav"))), recipe
    )
    torch.manual_seed(0)
    model = build_model("tiny")
    result = train(model, mixer, val_pairs, recipe, torch.device("cpu"), prefetch=True)
    history = pd.DataFrame(result.history)
    assert list(history.columns) == ["step", "train_loss", "val_si_sdri_db", "best"]
    assert result.best_step == int(history.loc[history["val_si_sdri_db"].idxmax(), "step"])
    model.load_state_dict(result.best_state)
    model.eval()
    with torch.inference_mode():
        by_hand = np.mean(
            [
                si_sdr_db(c, model(torch.from_numpy(m)[None])[0].numpy()) - si_sdr_db(c, m)
                for m, c in val_pairs
            ]
        )
    assert result.best_val_db == pytest.approx(by_hand, abs=1e-4)


def test_lazy_prefetched_training_resumes_exactly(pool, tmp_path, caplog, one_thread):
    speech_paths = read_speech_folder(pool / "speech")["wav"]
    noise_paths = sorted((pool / "noises").glob("*.wav"))
    recipe = Recipe(
        batch_size=2, crop_seconds=0.25, max_steps=4, val_every=2, patience=9, seed=3, val_metric="si_sdri"
    )
    mixer = CropMixer(AudioFiles(speech_paths[:-2]), AudioFiles(noise_paths), recipe, read_threads=2)
    val_pairs = validation_set(in_memory(speech_paths[-2:]), AudioFiles(noise_paths), seed=3)
    resume_file = tmp_path / "run.resume.pt"

    def fresh_model():
        torch.manual_seed(0)
        return build_model("tiny")

    straight = train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), prefetch=True)
    # a run of 4 steps leaves its step-2 checkpoint behind (the step module removes it after writing)
    train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, 2, prefetch=True)
    assert torch.load(resume_file, weights_only=False)["loop"]["step"] == 2
    with caplog.at_level(logging.INFO, logger="workflow_scripts.training.loop"):
        resumed = train(
            fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, 2, prefetch=True
        )
    assert "at step 2" in caplog.text
    pd.testing.assert_frame_equal(
        pd.DataFrame(resumed.history), pd.DataFrame(straight.history), check_exact=True
    )
    for key, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key


def test_pretrain_validates_on_the_held_out_noises(pool, tmp_path, monkeypatch):
    seen = []

    def spy(utterances, noises, seed, peak_normalize=False):
        seen.append(noises)
        return validation_set(utterances, noises, seed, peak_normalize)

    monkeypatch.setattr(pretrain, "validation_set", spy)
    common = [
        "--speech-dir",
        str(pool / "speech"),
        "--noise-dir",
        str(pool / "noises"),
        "--num-val",
        "2",
        "--batch-size",
        "2",
        "--crop-seconds",
        "0.25",
        "--max-steps",
        "1",
        "--val-every",
        "1",
        "--device",
        "cpu",
    ]
    pretrain.main([*common, "--val-noise-dir", str(pool / "val_noises"), "--out-dir", str(tmp_path / "a")])
    pretrain.main([*common, "--out-dir", str(tmp_path / "b")])
    val_noises = [read_audio(pool / "val_noises" / f"{name}.wav") for name in ("hum", "buzz")]
    assert len(seen[0]) == 2 and all(np.array_equal(a, b) for a, b in zip(seen[0], val_noises, strict=True))
    assert isinstance(seen[1], AudioFiles) and [Path(p).parent.name for p in seen[1].paths] == ["noises"] * 3
    _, checkpoint = load_checkpoint(tmp_path / "a" / "model.pt")
    assert checkpoint["training"]["val_noise_dir"] == str(pool / "val_noises")
    assert "val_sdr_db" in pd.read_csv(tmp_path / "b" / "training_log.csv").columns  # the default metric


def test_pretrain_end_to_end_on_si_sdri_with_held_out_noises(pool, tmp_path):
    out_dir, resume_file = tmp_path / "generalist", tmp_path / "generalist.resume.pt"
    command = [
        sys.executable,
        "-m",
        "workflow_scripts.pretrain",
        "--speech-dir",
        str(pool / "speech"),
        "--noise-dir",
        str(pool / "noises"),
        "--val-noise-dir",
        str(pool / "val_noises"),
        "--num-val",
        "2",
        "--model-size",
        "tiny",
        "--batch-size",
        "2",
        "--crop-seconds",
        "0.25",
        "--snr-db",
        "-5",
        "5",
        "--peak-normalize",
        "--max-steps",
        "4",
        "--val-every",
        "2",
        "--patience",
        "3",
        "--seed",
        "0",
        "--val-metric",
        "si_sdri",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--read-threads",
        "2",
        "--resume-file",
        str(resume_file),
        "--resume-every",
        "2",
        "--out-dir",
        str(out_dir),
    ]
    result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.yaml",
        "loss.png",
        "model.pt",
        "training_log.csv",
    ]
    history = pd.read_csv(out_dir / "training_log.csv")
    assert list(history.columns) == ["step", "train_loss", "val_si_sdri_db", "best"]
    assert list(history["step"]) == [0, 2, 4] and np.all(np.isfinite(history["val_si_sdri_db"]))
    _, checkpoint = load_checkpoint(out_dir / "model.pt")
    training = checkpoint["training"]
    assert training["recipe"]["val_metric"] == "si_sdri" and training["num_train"] == 6
    assert training["best_val_si_sdri_db"] == pytest.approx(history["val_si_sdri_db"].max())
    assert "validation SI-SDRi" in result.stderr and "read from disk" in result.stderr
    assert not resume_file.exists()


def test_pretrain_rule_passes_the_held_out_noises(tmp_path):
    """Dry run of the paper config's pre-training: LibriSpeech pool, --val-noise-dir and si_sdri."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--printshellcmds",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "configs" / "genda2025.yaml"),
        "--config",
        f"speakers={REPO / 'configs' / 'genda2025_speakers.tsv'}",
        "generalist={source: pretrain, pool: librispeech}",
        "--",
        "results/pretrain/tiny/model.pt",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    shell = next(line for line in result.stdout.splitlines() if "workflow_scripts.pretrain" in line)
    assert "--val-noise-dir data/pretrain_pool/val_noises" in shell
    assert "--val-metric si_sdri" in shell and "--num-val 500" in shell


def test_pretrain_rule_asks_for_the_configured_gpus(tmp_path):
    """generalist.pretrain_gpus is the job's gpu resource and its --processes; one that does not
    divide the batch stops the workflow while it is parsed."""

    def dry_run(pretrain_gpus: int) -> subprocess.CompletedProcess:
        overrides = tmp_path / f"gpus{pretrain_gpus}.yaml"
        overrides.write_text(
            f"speakers: {REPO / 'configs' / 'genda2025_speakers.tsv'}\n"
            f"generalist: {{source: pretrain, pool: librispeech, pretrain_gpus: {pretrain_gpus}}}\n"
        )
        command = [sys.executable, "-m", "snakemake", "-n", "--printshellcmds", "--snakefile", str(REPO / "Snakefile"),
                   "--directory", str(tmp_path), "--configfile", str(REPO / "configs" / "genda2025.yaml"),
                   str(overrides), "--resources", "gpu=4", "--", "results/pretrain/tiny/model.pt"]
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)

    result = dry_run(2)
    assert result.returncode == 0, result.stderr[-4000:]
    shell = next(line for line in result.stdout.splitlines() if "workflow_scripts.pretrain" in line)
    assert "--batch-size 64" in shell and "--processes 2" in shell
    refused = dry_run(3)
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr  # snakemake prints a parse-time error on stdout
    assert "generalist.pretrain_gpus 3 does not divide generalist.pretrain.batch_size 64" in message
