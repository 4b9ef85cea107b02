import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import evaluate, finetune, pretrain, score_mixtures
from workflow_scripts.files.audio import AudioError, mix_at_snr, power, read_audio, write_audio
from workflow_scripts.model.convtasnet import build_model, load_checkpoint, save_checkpoint
from workflow_scripts.files.folders import DataError, read_speech_folder
from workflow_scripts.training.data import (
    VAL_SNRS_DB,
    CropMixer,
    load_noises,
    load_utterances,
    nested_subsets,
    validation_set,
)
from workflow_scripts.training.recipe import Recipe, recipe_from_args

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
]


def coloured_noise(num_samples: int, exponent: float, seed: int) -> np.ndarray:
    """Deterministic noise with a 1/f^exponent power spectrum, peak 0.5."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(num_samples))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
    return (0.5 * noise / np.max(np.abs(noise))).astype(np.float32)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    """A speech folder of 8 flite utterances."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    folder = tmp_path_factory.mktemp("speech")
    (folder / "wavs").mkdir()
    rows = []
    for i, text in enumerate(SENTENCES):
        raw = folder / f"raw_{i}.wav"
        subprocess.run(["flite", "-voice", "kal16", "-t", text, "-o", str(raw)], check=True)
        audio = read_audio(raw)
        raw.unlink()
        write_audio(folder / "wavs" / f"utt{i:02d}.wav", audio)
        rows.append(
            {
                "utt_id": f"utt{i:02d}",
                "path": f"wavs/utt{i:02d}.wav",
                "text": text,
                "duration_s": audio.size / 16000,
            }
        )
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noises")
    rows = []
    for i, (kind, exponent) in enumerate([("white", 0.0), ("pink", 1.0), ("brown", 2.0)]):
        write_audio(folder / f"{kind}.wav", coloured_noise(4 * 16000, exponent, seed=i))
        rows.append({"noise_id": kind, "path": f"{kind}.wav", "kind": kind})
    pd.DataFrame(rows).to_csv(folder / "noises.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("init") / "generalist.pt"
    save_checkpoint(path, build_model("tiny"))
    return path


def test_nested_subsets(speech_dir):
    manifest = read_speech_folder(speech_dir)
    val_small, train_small = nested_subsets(manifest, num_train=3, num_val=2)
    val_large, train_large = nested_subsets(manifest, num_train=6, num_val=2)
    assert list(val_small["utt_id"]) == ["utt00", "utt01"] == list(val_large["utt_id"])
    assert list(train_small["utt_id"]) == ["utt02", "utt03", "utt04"]
    assert list(train_large["utt_id"][:3]) == list(train_small["utt_id"])
    with pytest.raises(DataError, match=str(speech_dir)):
        nested_subsets(manifest, num_train=7, num_val=2, folder=speech_dir)


def test_crop_mixer_shapes_and_snrs(speech_dir, noise_dir):
    utterances = load_utterances(read_speech_folder(speech_dir))
    _, noises = load_noises(noise_dir)
    recipe = Recipe(crop_seconds=1.0, snr_low_db=-5.0, snr_high_db=5.0)
    mixtures, cleans, snrs_db = CropMixer(utterances, noises, recipe).batch(np.random.default_rng(0), 6)
    assert mixtures.shape == cleans.shape == (6, 16000)
    assert mixtures.dtype == cleans.dtype == np.float32
    assert np.all((snrs_db >= -5.0) & (snrs_db <= 5.0)) and np.unique(snrs_db).size == 6
    for mixture, clean, snr_db in zip(mixtures, cleans, snrs_db):
        measured_db = 10 * np.log10(power(clean) / power(mixture - clean))
        assert measured_db == pytest.approx(snr_db, abs=0.01)


def test_crop_mixer_pads_short_utterances(speech_dir, noise_dir):
    utterance = load_utterances(read_speech_folder(speech_dir).iloc[:1])[0]
    _, noises = load_noises(noise_dir)
    mixer = CropMixer([utterance], noises, Recipe(crop_seconds=10.0, peak_normalize=True))
    mixture, clean, _ = mixer.example(np.random.default_rng(1))
    assert clean.size == 160_000 and not np.any(clean[utterance.size :])
    assert np.max(np.abs(mixture)) == pytest.approx(0.9, abs=1e-6)


def test_validation_set_is_deterministic(speech_dir, noise_dir):
    utterances = load_utterances(read_speech_folder(speech_dir).iloc[:4])
    _, noises = load_noises(noise_dir)
    first, second = validation_set(utterances, noises, seed=3), validation_set(utterances, noises, seed=3)
    for i, ((mixture, clean), (mixture_2, _)) in enumerate(zip(first, second)):
        assert np.array_equal(mixture, mixture_2) and clean.size == utterances[i].size
        snr_db = 10 * np.log10(power(clean) / power(mixture - clean))
        assert snr_db == pytest.approx(VAL_SNRS_DB[i % len(VAL_SNRS_DB)], abs=0.01)


def finetune_args(init, speech_dir, noise_dir, out_dir, num_train=4, num_val=2):
    return [
        "--init",
        str(init),
        "--speech-dir",
        str(speech_dir),
        "--noise-dir",
        str(noise_dir),
        "--out-dir",
        str(out_dir),
        "--num-train",
        str(num_train),
        "--num-val",
        str(num_val),
        "--batch-size",
        "2",
        "--crop-seconds",
        "0.5",
        "--lr",
        "1e-3",
        "--max-steps",
        "4",
        "--val-every",
        "2",
        "--patience",
        "3",
        "--seed",
        "7",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]


def test_finetune_short_run_is_reproducible(init_checkpoint, speech_dir, noise_dir, tmp_path):
    out_dirs = [tmp_path / "run1", tmp_path / "run2"]
    for out_dir in out_dirs:
        finetune.main(finetune_args(init_checkpoint, speech_dir, noise_dir, out_dir))
        assert sorted(p.name for p in out_dir.iterdir()) == [
            "config.yaml",
            "loss.png",
            "model.pt",
            "training_log.csv",
        ]
    history = pd.read_csv(out_dirs[0] / "training_log.csv")
    assert list(history["step"]) == [0, 2, 4]
    assert np.all(np.isfinite(history["val_sdr_db"])) and np.all(np.isfinite(history["train_loss"][1:]))
    model_1, checkpoint = load_checkpoint(out_dirs[0] / "model.pt")
    model_2, _ = load_checkpoint(out_dirs[1] / "model.pt")
    training = checkpoint["training"]
    assert training["best_step"] in (0, 2, 4) and training["recipe"]["seed"] == 7
    assert training["best_val_sdr_db"] == pytest.approx(history["val_sdr_db"].max())
    for key, value in model_1.state_dict().items():
        assert torch.equal(value, model_2.state_dict()[key]), key
    assert pd.read_csv(out_dirs[1] / "training_log.csv").equals(history)


def test_snr_range_in_one_argument():
    args = finetune.parse_args(
        [
            "--init",
            "g.pt",
            "--speech-dir",
            "s",
            "--num-train",
            "1",
            "--num-val",
            "1",
            "--noise-dir",
            "n",
            "--out-dir",
            "o",
            "--snr-db",
            "-3",
            "4.5",
        ]
    )
    recipe = recipe_from_args(args)
    assert (recipe.snr_low_db, recipe.snr_high_db) == (-3.0, 4.5)
    with pytest.raises(ValueError, match="--snr-low <= --snr-high"):
        recipe_from_args(
            finetune.parse_args(
                [
                    "--init",
                    "g.pt",
                    "--speech-dir",
                    "s",
                    "--num-train",
                    "1",
                    "--num-val",
                    "1",
                    "--noise-dir",
                    "n",
                    "--out-dir",
                    "o",
                    "--snr-db",
                    "5",
                    "-5",
                ]
            )
        )


def test_finetune_refuses_too_few_rows(init_checkpoint, speech_dir, noise_dir, tmp_path):
    out_dir = tmp_path / "out"
    with pytest.raises(DataError, match=str(speech_dir)):
        finetune.main(finetune_args(init_checkpoint, speech_dir, noise_dir, out_dir, num_train=7, num_val=2))
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []


def test_pretrain_short_run(speech_dir, noise_dir, tmp_path):
    out_dir = tmp_path / "generalist"
    pretrain.main(
        [
            "--speech-dir",
            str(speech_dir),
            "--noise-dir",
            str(noise_dir),
            "--out-dir",
            str(out_dir),
            "--model-size",
            "tiny",
            "--num-val",
            "2",
            "--batch-size",
            "2",
            "--crop-seconds",
            "0.5",
            "--max-steps",
            "2",
            "--val-every",
            "1",
            "--device",
            "cpu",
        ]
    )
    model, checkpoint = load_checkpoint(out_dir / "model.pt")
    assert checkpoint["training"]["num_train"] == 6 and checkpoint["training"]["num_val"] == 2
    assert checkpoint["training"]["model_size"] == "tiny"
    assert list(pd.read_csv(out_dir / "training_log.csv")["step"]) == [0, 1, 2]
    assert (out_dir / "config.yaml").read_text().startswith("speech_dir:")


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory, speech_dir, noise_dir):
    """A test folder: 3 utterances x 2 noises at SNRs from {-2.5, 0, 2.5}."""
    folder = tmp_path_factory.mktemp("test")
    utterances = load_utterances(read_speech_folder(speech_dir).iloc[5:8])
    noise_ids, noises = load_noises(noise_dir)
    rows = []
    for u, clean in enumerate(utterances):
        write_audio(folder / f"clean_{u}.wav", clean)
        for k in range(2):
            snr_db = VAL_SNRS_DB[(u + k) % 3]
            mixture, _ = mix_at_snr(clean, noises[k], snr_db, offset=1000 * u)
            mixture_id = f"m{u}_{k}"
            write_audio(folder / f"{mixture_id}.wav", mixture)
            rows.append(
                {
                    "mixture_id": mixture_id,
                    "mixture": f"{mixture_id}.wav",
                    "clean": f"clean_{u}.wav",
                    "noise_id": noise_ids[k],
                    "snr_db": snr_db,
                }
            )
    pd.DataFrame(rows).to_csv(folder / "test.csv", index=False)
    return folder


def test_evaluate_writes_metrics(init_checkpoint, test_dir, tmp_path):
    outputs = {}
    for threads in (1, 2):
        csv_path, json_path = tmp_path / f"eval{threads}.csv", tmp_path / f"eval{threads}.json"
        evaluate.main(
            [
                "--model",
                str(init_checkpoint),
                "--test-dir",
                str(test_dir),
                "--out-csv",
                str(csv_path),
                "--out-summary",
                str(json_path),
                "--device",
                "cpu",
                "--threads",
                str(threads),
                "--enhanced-dir",
                str(tmp_path / f"enhanced{threads}"),
            ]
        )
        outputs[threads] = pd.read_csv(csv_path, keep_default_na=False, na_values=["", "nan", "NaN"])
    table = outputs[1]
    assert len(table) == 6
    assert list(table.columns) == [
        "mixture_id",
        "noise_id",
        "snr_db",
        "sdr_in_db",
        "sdr_db",
        "sdri_db",
        "estoi_in",
        "estoi",
        "pesq_in",
        "pesq",
        "notes",
    ]
    for column in ("sdr_in_db", "sdr_db", "sdri_db"):
        assert np.all(np.isfinite(table[column])), column
    assert table["sdr_in_db"].to_numpy() == pytest.approx(table["snr_db"].to_numpy(), abs=0.05)
    assert table["sdri_db"].to_numpy() == pytest.approx(
        (table["sdr_db"] - table["sdr_in_db"]).to_numpy(), abs=2e-4
    )
    pd.testing.assert_frame_equal(outputs[1], outputs[2])
    summary = json.loads((tmp_path / "eval1.json").read_text())
    assert summary["n_utterances"] == 6
    assert summary["sdr_db"] == pytest.approx(table["sdr_db"].mean(), abs=1e-3)
    assert set(summary["n_nan"]) == {"sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi", "pesq_in", "pesq"}
    assert len(list((tmp_path / "enhanced1").glob("*.wav"))) == 6

    # the mixtures' own scores, computed once by score_mixtures, give the same table
    score_mixtures.main(["--test-dir", str(test_dir), "--out-csv", str(tmp_path / "mixtures.csv")])
    evaluate.main(["--model", str(init_checkpoint), "--test-dir", str(test_dir), "--device", "cpu",
                   "--input-scores", str(tmp_path / "mixtures.csv"),
                   "--out-csv", str(tmp_path / "cached.csv"), "--out-summary", str(tmp_path / "cached.json")])
    cached = pd.read_csv(tmp_path / "cached.csv", keep_default_na=False, na_values=["", "nan", "NaN"])
    pd.testing.assert_frame_equal(cached, outputs[1], atol=2e-4)


def test_evaluate_checks_test_folder_before_model(test_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(test_dir, broken)
    (broken / "clean_1.wav").unlink()
    with pytest.raises(AudioError, match="clean_1.wav"):
        evaluate.main(
            [
                "--model",
                str(tmp_path / "absent.pt"),
                "--test-dir",
                str(broken),
                "--out-csv",
                str(tmp_path / "e.csv"),
                "--out-summary",
                str(tmp_path / "e.json"),
            ]
        )
    assert not (tmp_path / "e.csv").exists()
