"""Real data: download -> checksum -> extract -> prepare, on a small mirror with the real layouts
(tests/fake_mirror.py), and a two-speaker slice of the GenDA 2025 grid through snakemake."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from fake_mirror import ARCHIVES, CHALLENGE_TOP, build_mirror, resources_config
from test_workflow import REPO, planned_jobs, snakemake

from workflow_scripts import (
    download,
    evaluate,
    export_task2,
    prepare_generalist,
    prepare_gt,
    prepare_challenge_test,
    prepare_pretrain_pool,
    prepare_speaker,
    score_mixtures,
)
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.files.corpora import ResourceError, challenge_sentences
from workflow_scripts.files.folders import read_noise_table, read_speech_folder, read_test_folder
from workflow_scripts.scoring.enhanced import METRICS, NO_REFERENCE


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, genda25_dir):
    folder = tmp_path_factory.mktemp("mirror")
    info = build_mirror(folder, genda25_dir)
    return {"dir": folder, "info": info, "resources": resources_config(folder, info)}


def fetch(mirror, name: str, out_root: Path, **overrides) -> Path:
    """Run the download step for resource `name` of the mirror; returns its folder."""
    spec = {**mirror["resources"][name], **overrides}
    out = out_root / name
    argv = ["--name", name, "--url", spec["url"], "--archive-dir", str(out_root / "archives"), "--out-dir", str(out)]
    for key in ("sha256", "md5"):
        if spec.get(key):
            argv += [f"--{key}", spec[key]]
    if spec.get("members"):
        argv += ["--members", *spec["members"]]
    if spec.get("strip_top_folder"):
        argv.append("--strip-top-folder")
    assert download.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def resources(mirror, tmp_path_factory):
    root = tmp_path_factory.mktemp("resources")
    return {name: fetch(mirror, name, root) for name in ARCHIVES}


def no_temporaries(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.rglob("*"))


# ---- download ------------------------------------------------------------------------------


def test_download_verifies_the_sum_and_extracts_the_archive_layout(resources, mirror):
    libritts = resources["libritts_test_clean"]
    record = json.loads((libritts / "_download.json").read_text())
    assert record["verified"] == ["sha256"]
    assert record["sha256"] == mirror["info"]["sums"]["libritts_test_clean"]["sha256"]
    assert len(list((libritts / "LibriTTS/test-clean/237").glob("*/*.wav"))) == 21
    # a file:// archive is read where it is: nothing is copied
    assert (mirror["dir"] / ARCHIVES["libritts_test_clean"]).is_file()
    assert no_temporaries(libritts.parent)


def test_md5_and_members_filter(resources):
    musan = resources["musan"]
    assert json.loads((musan / "_download.json").read_text())["verified"] == ["md5"]
    assert (musan / "musan/noise/sound-bible").is_dir() and (musan / "musan/noise/free-sound").is_dir()
    assert not (musan / "musan/music").exists()


def test_github_archive_loses_its_top_folder_and_a_missing_checksum_is_recorded_with_a_warning(
        resources, mirror, caplog):
    challenge = resources["genda_challenge"]
    assert (challenge / "data/F0/reference_wav/F0_ref.wav").is_file()
    assert not (challenge / CHALLENGE_TOP).exists()
    record = json.loads((challenge / "_download.json").read_text())
    assert record["verified"] == [] and record["sha256"] == mirror["info"]["sums"]["genda_challenge"]["sha256"]
    with caplog.at_level("WARNING"):
        fetch(mirror, "genda_challenge", challenge.parent / "again")
    assert "no published checksum" in caplog.text and record["sha256"] in caplog.text


def test_checksum_mismatch_names_the_file_and_both_sums_and_leaves_nothing(mirror, tmp_path):
    wrong = "0" * 64
    with pytest.raises(download.ChecksumError) as error:
        fetch(mirror, "libritts_test_clean", tmp_path, sha256=wrong)
    actual = mirror["info"]["sums"]["libritts_test_clean"]["sha256"]
    message = str(error.value)
    assert ARCHIVES["libritts_test_clean"] in message and wrong in message and actual in message
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def http_server(mirror):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror["dir"]))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_download_is_verified_then_extracted_and_the_archive_removed(mirror, tmp_path, http_server):
    url = f"{http_server}/{ARCHIVES['librispeech_train_clean_360']}"
    out = fetch(mirror, "librispeech_train_clean_360", tmp_path, url=url)
    assert (out / "LibriSpeech/train-clean-360/100").is_dir()
    assert list((tmp_path / "archives").iterdir()) == []
    # a corrupt download is removed, so that the next try fetches it again
    with pytest.raises(download.ChecksumError, match="expected 0{64}"):
        fetch(mirror, "librispeech_train_clean_360", tmp_path / "bad", url=url, sha256="0" * 64)
    assert not (tmp_path / "bad" / "archives" / ARCHIVES["librispeech_train_clean_360"]).exists()


def test_mirror_folder_is_tried_before_the_url(mirror, tmp_path):
    name = "librispeech_train_clean_100"
    spec = mirror["resources"][name]
    argv = ["--name", name, "--url", f"https://unreachable.invalid/{ARCHIVES[name]}", "--sha256", spec["sha256"],
            "--mirror", str(mirror["dir"]), "--out-dir", str(tmp_path / name)]
    assert download.main(argv) == 0
    assert "mirror" in json.loads((tmp_path / name / "_download.json").read_text())["source"]


def test_an_extracted_copy_is_linked_as_it_is(resources, tmp_path):
    out = tmp_path / "musan"
    assert download.main(["--name", "musan", "--local-dir", str(resources["musan"]), "--out-dir", str(out)]) == 0
    assert out.is_symlink() and (out / "musan/noise/free-sound").is_dir()


# ---- prepare -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_speaker(resources, tmp_path_factory):
    out = tmp_path_factory.mktemp("speakers") / "F0"
    prepare_speaker.main([
        "--speaker", "F0", "--group", "real", "--challenge-dir", str(resources["genda_challenge"]),
        "--challenge-id", "F0", "--musan-dir", str(resources["musan"]),
        "--libritts-dir", str(resources["libritts_test_clean"]), "--libritts-id", "237",
        "--num-test-utterances", "3", "--out-dir", str(out)])
    return out


def test_real_speaker_folder(real_speaker, resources, mirror):
    enrollment, rate = sf.read(real_speaker / "enrollment.wav")
    assert rate == 16000 and enrollment.ndim == 1
    sentences = (real_speaker / "sentences.txt").read_text().splitlines()
    challenge = resources["genda_challenge"]
    assert sentences == challenge_sentences(challenge, "F0") + challenge_sentences(challenge, "F0", additional=True)
    assert len(sentences) == 250
    noises = read_noise_table(real_speaker / "noises")
    assert len(noises) == 5 and noises.noise_id.str.contains("noise-sound-bible").all()
    test = read_test_folder(real_speaker / "test")
    assert len(test) == 15 and (test.clean_wav != "").all()
    record = json.loads((real_speaker / "speaker.json").read_text())
    layout = mirror["info"]["libritts_layout"]
    # test utterances are held out: they read none of the speaker's sentences and are not the enrollment clip
    assert set(record["test"]["test_utterances"]) <= set(layout["held_out"])
    assert record["test"]["enrollment_utterances"] == layout["enrollment"]
    assert set(test.clean_source) == set(record["test"]["test_utterances"])


def test_real_speech_reads_the_sentences_in_order_and_leaves_the_test_set_out(real_speaker, resources, mirror):
    gt = real_speaker / "gt"
    prepare_gt.main(["--speaker", "F0", "--record", str(real_speaker / "speaker.json"),
                     "--sentences", str(real_speaker / "sentences.txt"),
                     "--libritts-dir", str(resources["libritts_test_clean"]), "--libritts-id", "237",
                     "--num-utterances", "10", "--out-dir", str(gt)])
    manifest = read_speech_folder(gt)
    sentences = (real_speaker / "sentences.txt").read_text().splitlines()
    assert list(manifest.matched_sentence) == [True] * 8 + [False] * 2
    for text, sentence in zip(manifest.text[:8], sentences[:8]):
        assert text.strip().lower() == sentence.strip().lower()
    record = json.loads((real_speaker / "speaker.json").read_text())
    left_out = set(record["test"]["test_utterances"]) | set(record["test"]["enrollment_utterances"])
    assert not left_out & set(manifest.utt_id)
    with pytest.raises(ValueError, match="fewer than the 30 the gt data sizes need"):
        prepare_gt.main(["--speaker", "F0", "--record", str(real_speaker / "speaker.json"),
                         "--sentences", str(real_speaker / "sentences.txt"),
                         "--libritts-dir", str(resources["libritts_test_clean"]), "--libritts-id", "237",
                         "--num-utterances", "30", "--out-dir", str(real_speaker / "gt30")])
    assert not (real_speaker / "gt30").exists()


def test_a_speaker_with_only_noisy_mixtures_gets_the_scores_that_need_no_reference(resources, tmp_path):
    """The virtual speaker's test set is the challenge's 45 noisy mixtures: enhanced, its reference
    metrics not applicable, and the predicted MOS of the mixtures and of the enhanced speech."""
    out = tmp_path / "VirtualM3"
    prepare_speaker.main(["--speaker", "VirtualM3", "--group", "virtual",
                          "--challenge-dir", str(resources["genda_challenge"]), "--challenge-id", "VirtualM3",
                          "--musan-dir", str(resources["musan"]), "--out-dir", str(out)])
    test = read_test_folder(out / "test")
    assert len(test) == 45 and (test.clean_wav == "").all()
    model = tmp_path / "tiny.pt"
    prepare_generalist.main(["--challenge-dir", str(resources["genda_challenge"]), "--model-size", "tiny",
                             "--out", str(model)])
    nonintrusive = ["--mos", "dnsmos", "distillmos", "--max-utterances", "3"]
    score_mixtures.main(["--test-dir", str(out / "test"), *nonintrusive, "--out-csv", str(tmp_path / "mixtures.csv")])
    evaluate.main(["--model", str(model), "--test-dir", str(out / "test"), "--device", "cpu", *nonintrusive,
                   "--input-scores", str(tmp_path / "mixtures.csv"),
                   "--out-csv", str(tmp_path / "eval.csv"), "--out-summary", str(tmp_path / "eval.json")])
    table = pd.read_csv(tmp_path / "eval.csv")
    assert table[list(METRICS)].isna().all().all()
    assert (table.notes == NO_REFERENCE).all()
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["n_without_reference"] == 45 and summary["n_nonintrusive"] == 3
    scored = table.iloc[[0, 22, 44]]  # three of 45, spread: the first, the middle and the last
    columns = [f"{name}{side}" for name in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "distillmos")
               for side in ("_in", "")]
    assert np.isfinite(scored[columns].to_numpy()).all()
    assert table.drop(index=scored.index)[columns].isna().all().all()
    assert summary["dnsmos_ovrl"] == pytest.approx(scored.dnsmos_ovrl.mean(), abs=1e-4)


def test_track2_export_enhances_the_challenge_mixtures_in_order(resources, tmp_path):
    mixtures = tmp_path / "challenge_test"
    prepare_challenge_test.main(["--speaker", "F0", "--challenge-dir", str(resources["genda_challenge"]),
                           "--challenge-id", "F0", "--out-dir", str(mixtures)])
    model = tmp_path / "tiny.pt"
    prepare_generalist.main(["--challenge-dir", str(resources["genda_challenge"]), "--model-size", "tiny",
                             "--out", str(model)])
    out = tmp_path / "team_task2" / "F0"
    export_task2.main(["--speaker", "F0", "--model", str(model), "--test-dir", str(mixtures),
                       "--device", "cpu", "--out-dir", str(out)])
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"F0_task2_{i:02d}.wav" for i in range(45)]
    source = resources["genda_challenge"] / "data/F0/mixed_wavs"
    for i in (0, 44):
        assert sf.info(out / f"F0_task2_{i:02d}.wav").frames == sf.info(source / f"F0_mixed_{i:02d}.wav").frames


def test_challenge_generalist_loads_and_large_is_refused(resources, tmp_path):
    model_pt = tmp_path / "tiny.pt"
    prepare_generalist.main(["--challenge-dir", str(resources["genda_challenge"]), "--model-size", "tiny",
                             "--out", str(model_pt)])
    _, checkpoint = load_checkpoint(model_pt)
    assert checkpoint["model_config"]["B"] == 8 and "Dec19_03-47-42" in checkpoint["source"]
    with pytest.raises(ResourceError, match="released no large generalist"):
        prepare_generalist.main(["--challenge-dir", str(resources["genda_challenge"]), "--model-size", "large",
                                 "--out", str(tmp_path / "large.pt")])
    with pytest.raises(ResourceError, match=r"expected one \*convtasnet_medium.pt, found 0"):
        prepare_generalist.main(["--challenge-dir", str(resources["genda_challenge"]), "--model-size", "medium",
                                 "--out", str(tmp_path / "medium.pt")])
    assert not (tmp_path / "large.pt").exists() and not (tmp_path / "medium.pt").exists()


def test_pretrain_pool_leaves_out_the_target_speakers_and_holds_out_the_last_noises(resources, tmp_path):
    out = tmp_path / "pretrain_pool"
    prepare_pretrain_pool.main([
        "--librispeech-dirs", str(resources["librispeech_train_clean_100"]),
        str(resources["librispeech_train_clean_360"]), "--musan-dir", str(resources["musan"]),
        "--held-out-speakers", "237", "2961", "--num-val-noises", "2", "--out-dir", str(out)])
    manifest = read_speech_folder(out / "speech")
    assert list(manifest.speaker.astype(str).unique()) == ["19", "100"]
    assert all(str(p).endswith(".flac") for p in manifest.path)  # 16 kHz mono: used where it is
    train, val = read_noise_table(out / "noises"), read_noise_table(out / "val_noises")
    assert list(train.noise_id) == [f"noise-free-sound-{i:04d}" for i in range(3)]
    assert list(val.noise_id) == ["noise-free-sound-0003", "noise-free-sound-0004"]


def test_own_speaker_from_plain_files(tmp_path, genda25_dir):
    rng = np.random.default_rng(0)
    own = tmp_path / "own"
    for folder in ("noises", "clean"):
        (own / folder).mkdir(parents=True)
    for i in range(2):
        sf.write(own / "noises" / f"fan{i}.wav", (0.1 * rng.standard_normal(48000)).astype(np.float32), 48000)
        sf.write(own / "clean" / f"utt{i}.flac", (0.1 * rng.standard_normal(20000)).astype(np.float32), 16000)
    (own / "sentences.txt").write_text("One sentence.\nAnother one.\n\n")
    out = tmp_path / "Me"
    prepare_speaker.main(["--speaker", "Me", "--group", "real", "--enrollment",
                          str(genda25_dir / "enrollment" / "M1_ref.wav"), "--sentences", str(own / "sentences.txt"),
                          "--noise-dir", str(own / "noises"), "--test-clean", str(own / "clean"),
                          "--out-dir", str(out)])
    assert (out / "sentences.txt").read_text() == "One sentence.\nAnother one.\n"
    assert sf.info(out / "noises" / read_noise_table(out / "noises").path[0]).samplerate == 16000
    assert len(read_test_folder(out / "test")) == 4  # both clean recordings x both noises
    (own / "bad.txt").write_text("One.\n\nTwo.\n")
    with pytest.raises(ValueError, match="bad.txt: line 2 is empty"):
        prepare_speaker.main(["--speaker", "Me2", "--group", "real", "--enrollment",
                              str(genda25_dir / "enrollment" / "M1_ref.wav"), "--sentences", str(own / "bad.txt"),
                              "--noise-dir", str(own / "noises"), "--test-clean", str(own / "clean"),
                              "--out-dir", str(tmp_path / "Me2")])
    assert not (tmp_path / "Me2").exists() and no_temporaries(tmp_path)


@pytest.mark.parametrize("problem", ["short enrollment", "over-long sentence"])
def test_own_files_are_checked_by_prepare_speaker_naming_them_and_the_config_key(tmp_path, problem):
    own = tmp_path / "own"
    (own / "noises").mkdir(parents=True)
    rng = np.random.default_rng(1)
    sf.write(own / "noises" / "fan.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    enrollment_s = 1.5 if problem == "short enrollment" else 3.0
    tone = 0.3 * np.sin(np.arange(int(enrollment_s * 16000)) / 5.0)
    sf.write(own / "my_voice.wav", tone.astype(np.float32), 16000)
    long_line = "word " * 100 if problem == "over-long sentence" else "Another one."
    (own / "my_sentences.txt").write_text(f"One sentence.\n{long_line}\n")
    out = tmp_path / "Me"
    message = {
        "short enrollment": r"own/my_voice\.wav: enrollment clip is 1\.50 s long, shorter than the 2 s of config"
                            r" enrollment\.min_seconds",
        "over-long sentence": r"own/my_sentences\.txt: line 2 has 499 characters, more than the maximum of 400",
    }[problem]
    with pytest.raises(ValueError, match=message):
        prepare_speaker.main(["--speaker", "Me", "--group", "real", "--enrollment", str(own / "my_voice.wav"),
                              "--sentences", str(own / "my_sentences.txt"), "--noise-dir", str(own / "noises"),
                              "--test-mixtures", str(own / "noises"), "--min-enrollment-s", "2",
                              "--out-dir", str(out)])
    assert not out.exists() and no_temporaries(tmp_path)


# ---- the grid through snakemake --------------------------------------------------------------


SLICE_SHEET = "speaker\tgroup\tchallenge_id\tlibritts_id\nF0\treal\tF0\t237\nVirtualM3\tvirtual\tVirtualM3\t\n"


def slice_config(mirror) -> dict:
    """configs/genda2025.yaml cut down to two speakers, one small data size, the offline world_clone
    TTS in place of the hub systems, the challenge's tiny generalist, a few fine-tuning steps and
    DNSMOS and DistillMOS on 3 mixtures of each speaker."""
    config = yaml.safe_load((REPO / "configs" / "genda2025.yaml").read_text())
    config.update(
        resources=mirror["resources"],
        speaker_data={"num_test_utterances": 2, "test_snrs_db": [-2.5, 0.0, 2.5], "seed": 0},
        conditions={"gt": ["5utt"], "worldclone": ["5utt"]},
        tts={"worldclone": {"backend": "world_clone", "seed": 0,
                            "options": {"base_voices": ["kal16", "slt"], "num_warps": 3}}},
        data_sizes={"5utt": {"train": 3, "val": 2}},
        model_sizes=["tiny"],
        finetune={"batch_size": 2, "crop_seconds": 1.0, "lr": 1.0e-4, "snr_db": [-5.0, 5.0], "max_steps": 2,
                  "val_every": 1, "patience": 1, "seed": 0},
        tts_scoring={"asr": "none", "model_dir": "models", "max_utterances": 2},
        # the scores that need no reference on 3 mixtures of each speaker, not all 45 of the virtual one
        evaluation=dict(config["evaluation"], max_utterances=3),
        download_models=False,
        export={"team": "slice", "task1": {"tts": "worldclone"},
                "task2": {"model": "tiny", "source": "worldclone", "size": "5utt"}},
    )
    return config


def write_workdir(tmp_path: Path, config: dict, sheet: str) -> Path:
    (tmp_path / "speakers.tsv").write_text(sheet)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(config, speakers=str(tmp_path / "speakers.tsv"))))
    return tmp_path


def test_slice_dag_has_each_speakers_own_conditions(mirror, tmp_path):
    workdir = write_workdir(tmp_path, slice_config(mirror), SLICE_SHEET)
    jobs = planned_jobs(workdir)
    counts = pd.Series([rule for rule, _ in jobs]).value_counts()
    assert counts["download"] == 3  # challenge, LibriTTS, MUSAN: no LibriSpeech for the challenge's generalist
    assert counts["prepare_speaker"] == 2 and counts["prepare_gt"] == 1  # gt: the real speaker only
    # every speaker's mixtures are scored once: the virtual one's without a reference (predicted MOS)
    # fine-tuning stacked by speaker, as the paper grid does: the real speaker's gt and clone in one job,
    # the virtual speaker's clone in one of its own (no gt)
    assert counts["finetune_stacked"] == 1 and counts["finetune_stacked_no_gt"] == 1 and "finetune" not in counts
    assert counts["score_mixtures"] == 2
    assert counts["export_task1"] == 2 and counts["export_task2"] == 2 and counts["export_zip"] == 2
    assert not any("VirtualM3" in output for rule, output in jobs if rule == "prepare_gt")


@pytest.mark.slow
def test_two_speaker_slice_of_the_grid_end_to_end(mirror, tmp_path):
    workdir = write_workdir(tmp_path, slice_config(mirror), SLICE_SHEET)
    snakemake(workdir, "--cores", "2")

    summary = (workdir / "results" / "summary.md").read_text()
    for title in ("### All speakers", "### Real speakers", "### Virtual speakers"):
        assert title in summary
    table = pd.read_csv(workdir / "results" / "summary.csv")
    real = table[table.group == "real"].set_index("condition")
    assert real.loc[["generalist", "gt 5utt", "worldclone 5utt"], ["SDRi", "SDR", "eSTOI", "PESQ"]].notna().all().all()
    virtual = table[table.group == "virtual"].set_index("condition")
    assert "gt 5utt" not in virtual.index
    assert virtual.loc[["generalist", "worldclone 5utt"], ["SDRi", "SDR"]].isna().all().all()
    # no reference, but the scores that need none: the mixtures' and the enhanced speech's
    nonintrusive = ["DNSMOS_OVRL_in", "DNSMOS_OVRL_out", "DistillMOS_in", "DistillMOS_out"]
    assert virtual.loc[["generalist", "worldclone 5utt"], nonintrusive].notna().all().all()
    assert "Non-intrusive scores" in summary.split("### Virtual speakers")[1]
    both = table[table.group == "all"].set_index("condition")
    assert both.loc["worldclone 5utt", "n_speakers"] == 2 and both.loc["gt 5utt", "n_speakers"] == 1
    assert both.loc["worldclone 5utt", "n_scored"] == 1  # the virtual speaker has no clean references

    export_root = workdir / "results" / "export"
    for speaker in ("F0", "VirtualM3"):
        assert len(list((export_root / "slice_task2" / speaker).glob(f"{speaker}_task2_*.wav"))) == 45
        assert len(list((export_root / "slice_task1" / speaker).glob(f"{speaker}_task1_*.wav"))) == 50
    assert (export_root / "slice_task2.zip").stat().st_size > 0
    assert planned_jobs(workdir) == []
