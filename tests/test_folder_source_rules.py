"""A TTS system that is a folder of speech made elsewhere, through the workflow's rules: no model,
no voice, an import_speech job per speaker; a data size beyond a folder stopped (or skipped) while
the workflow is parsed; and both layouts (a Track 1 submission as unzipped, a plain folder with
transcripts) run to results/summary.md, a changed file rerunning only its speaker's jobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from signals import speech_like
from test_workflow import REPO, load_config, make_workdir, planned_jobs, snakemake

from workflow_scripts.files.audio import SAMPLE_RATE, resample

SHEET = "speaker\tseed\nciA\t11\nciB\t12\n"
SPEAKERS = ["ciA", "ciB"]


def track1_submission(root, count: int, speakers=SPEAKERS, sample_rate: int = SAMPLE_RATE, channels: int = 1):
    """{root}/myteam_task1/{spk}/{spk}_task1_NN.wav, the folder a Track 1 zip unzips to."""
    for spk_index, spk in enumerate(speakers):
        folder = root / "myteam_task1" / spk
        folder.mkdir(parents=True)
        for index in range(count):
            audio = resample(speech_like(int(1.5 * SAMPLE_RATE), 100 * spk_index + index), SAMPLE_RATE, sample_rate)
            sf.write(folder / f"{spk}_task1_{index:02d}.wav", np.tile(audio[:, None], (1, channels)), sample_rate,
                     subtype="PCM_16")


def plain_folder(root, count: int, speakers=SPEAKERS):
    """{root}/{speaker}/uNN.flac, each with its transcript uNN.txt."""
    for spk_index, speaker in enumerate(speakers):
        folder = root / speaker
        folder.mkdir(parents=True)
        for index in range(count):
            sf.write(folder / f"u{index + 1}.flac", speech_like(SAMPLE_RATE, 500 + 100 * spk_index + index),
                     SAMPLE_RATE, format="FLAC")
            (folder / f"u{index + 1}.txt").write_text(f"{speaker} says sentence {index + 1}.\n")


def workdir_of(tmp_path, config: dict):
    """A working folder beside the systems' folders."""
    (tmp_path / "work").mkdir()
    return make_workdir(tmp_path / "work", config, SHEET)


def folder_config(systems: dict, sizes: dict | None = None) -> dict:
    """tests/config/ci.yaml with the given folder systems as its TTS sources, and no gt."""
    config = load_config("tests/config/ci.yaml")
    config["sources"] = list(systems)
    config["tts"] = {name: {"backend": "folder", "options": options} for name, options in systems.items()}
    config["data_sizes"] = sizes or {"3utt": {"train": 3, "val": 2}}
    config["tts_scoring"] = dict(config["tts_scoring"], mos=["dnsmos"], max_utterances=3)
    return config


def dry_run_fails(workdir) -> str:
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0, result.stdout[-2000:]
    assert not (workdir / "data").exists() and not (workdir / "results").exists()
    return result.stdout + result.stderr


# ---- while the workflow is parsed ------------------------------------------------------------------


def test_a_folder_system_loads_no_model_and_clones_no_voice(tmp_path):
    track1_submission(tmp_path / "sub", 8)
    config = folder_config({"mysys": {"path": str(tmp_path / "sub")}},
                           {"3utt": {"train": 3, "val": 2}, "6utt": {"train": 6, "val": 2}})
    config["download_models"] = True
    workdir = workdir_of(tmp_path, config)
    jobs = planned_jobs(workdir)
    rules = [rule for rule, _ in jobs]
    assert rules.count("import_speech") == 2 and rules.count("finetune") == 4
    assert not {"clone_voice", "synthesize"} & set(rules)
    assert [output for rule, output in jobs if rule == "download_models"] == ["models/manifests/scoring.json"]


def test_a_data_size_beyond_a_folder_is_refused_before_any_job(tmp_path):
    track1_submission(tmp_path / "sub", 7)  # 6utt needs 8
    config = folder_config({"mysys": {"path": str(tmp_path / "sub")}},
                           {"3utt": {"train": 3, "val": 2}, "6utt": {"train": 6, "val": 2}})
    workdir = workdir_of(tmp_path, config)
    output = dry_run_fails(workdir)
    assert (f"{tmp_path}/sub/myteam_task1/ciA: speaker ciA has 7 utterances, fewer than the 8 of data size 6utt"
            in output), output[-2000:]
    assert "tts.mysys.options.missing_sizes: skip" in output


def test_missing_sizes_skip_leaves_the_size_out_with_a_warning(tmp_path):
    track1_submission(tmp_path / "sub", 7)
    config = folder_config({"mysys": {"path": str(tmp_path / "sub"), "missing_sizes": "skip"}},
                           {"3utt": {"train": 3, "val": 2}, "6utt": {"train": 6, "val": 2}})
    workdir = workdir_of(tmp_path, config)
    result = snakemake(workdir, "-n")
    assert "mysys at 6utt is left out (options.missing_sizes: skip)" in result.stdout + result.stderr
    finetunes = [output.split(", ")[0] for rule, output in planned_jobs(workdir) if rule == "finetune"]
    assert sorted(finetunes) == [f"results/finetune/tiny/mysys/3utt/{s}/model.pt" for s in SPEAKERS]


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "'path' is a required property"),
        ({"path": "nowhere"}, "nowhere: folder of speech not found"),
        ({"path": "SUB", "missing_sizes": "maybe"}, "'maybe' is not one of ['refuse', 'skip']"),
    ],
    ids=["no-path", "no-folder", "bad-policy"],
)
def test_a_bad_folder_system_config_is_named(tmp_path, options, message):
    track1_submission(tmp_path / "sub", 6)
    options = {k: str(tmp_path / "sub") if v == "SUB" else v for k, v in options.items()}
    workdir = workdir_of(tmp_path, folder_config({"mysys": options}))
    assert message in dry_run_fails(workdir)


def test_a_speaker_without_a_folder_is_named(tmp_path):
    track1_submission(tmp_path / "sub", 6, speakers=["ciA"])
    workdir = workdir_of(tmp_path, folder_config({"mysys": {"path": str(tmp_path / "sub")}}))
    output = dry_run_fails(workdir)
    assert f"config tts.mysys (backend folder): {tmp_path}/sub: no folder of speaker ciB's speech" in output


# ---- through the rules -------------------------------------------------------------------------------


@pytest.mark.slow
def test_both_layouts_run_to_the_summary_and_a_changed_file_reruns_its_speaker_only(tmp_path):
    track1_submission(tmp_path / "track1", 6, sample_rate=44100, channels=2)
    plain_folder(tmp_path / "plain", 6)
    systems = {"trackone": {"path": str(tmp_path / "track1")}, "plain": {"path": str(tmp_path / "plain")}}
    workdir = workdir_of(tmp_path, folder_config(systems))
    snakemake(workdir, "--cores", "2")

    summary = (workdir / "results" / "summary.md").read_text()
    for condition in ["generalist", "trackone 3utt", "plain 3utt"]:
        assert f"| {condition} |" in summary
    table = pd.read_csv(workdir / "results" / "summary.csv")
    assert table[table.condition.isin(["trackone 3utt", "plain 3utt"])][["SDRi", "SDR"]].notna().all().all()
    assert "trackone" in (workdir / "results" / "tts_summary.md").read_text()
    assert not (workdir / "logs" / "clone_voice").exists() and not (workdir / "logs" / "synthesize").exists()

    for speaker in SPEAKERS:
        # the Track 1 files, 44.1 kHz stereo, read their sentences in order, as 16 kHz mono
        speech = workdir / "results" / "speech" / "trackone" / speaker
        manifest = pd.read_csv(speech / "manifest.csv")
        sentences = (workdir / "data" / "speakers" / speaker / "sentences.txt").read_text().splitlines()
        assert list(manifest.text) == [" ".join(s.split()) for s in sentences[:5]]  # 3utt: 3 train + 2 val
        for path in manifest.path:
            info = sf.info(speech / path)
            assert info.samplerate == SAMPLE_RATE and info.channels == 1
            assert abs(info.frames - 1.5 * SAMPLE_RATE) <= 2
        plain = pd.read_csv(workdir / "results" / "speech" / "plain" / speaker / "manifest.csv")
        assert list(plain.text) == [f"{speaker} says sentence {i}." for i in range(1, 6)]

    # a file that no data size uses changes nothing; a used one reruns its speaker's jobs only
    unused = tmp_path / "plain" / "ciA" / "u6.flac"
    sf.write(unused, speech_like(SAMPLE_RATE, 998), SAMPLE_RATE, format="FLAC")
    assert planned_jobs(workdir) == []
    changed = tmp_path / "plain" / "ciA" / "u3.flac"
    sf.write(changed, speech_like(SAMPLE_RATE, 999), SAMPLE_RATE, format="FLAC")
    jobs = planned_jobs(workdir)
    assert "import_speech" in {rule for rule, _ in jobs}
    for rule, output in jobs:
        assert rule in {"aggregate", "analyze", "all"} or ("plain" in output and "ciA" in output), (rule, output)


def test_the_track1_submission_config_plans_the_submission_against_the_baselines(tmp_path):
    """configs/track1_submission.yaml on the challenge's 20 speakers, with a submission's file names."""
    workdir = tmp_path / "work"
    sheet = (REPO / "configs" / "genda2025_speakers.tsv").read_text()
    challenge_ids = [line.split("\t")[2] for line in sheet.splitlines() if line and line[0] not in "#s"]
    for spk in challenge_ids:
        folder = workdir / "submissions" / "mysubmission" / "myteam_task1" / spk
        folder.mkdir(parents=True)
        for index in range(50):
            (folder / f"{spk}_task1_{index:02d}.wav").touch()
    make_workdir(workdir, load_config("configs/track1_submission.yaml"), sheet)
    counts = pd.Series([rule for rule, _ in planned_jobs(workdir)]).value_counts().to_dict()
    assert counts["import_speech"] == 20 and "clone_voice" not in counts and "synthesize" not in counts
    assert counts["score_tts"] == 20 + 10  # the submission for every speaker, gt for the real ones
    assert counts["finetune"] == 3 * (20 + 10) and counts["evaluate_generalist"] == 3 * 20
