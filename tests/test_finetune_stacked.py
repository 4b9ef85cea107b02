"""Stacked fine-tuning of one speaker's conditions (workflow_scripts/finetune_stacked.py) and the
finetune_stacked rules (config finetune_stacking.by: speaker).

With `--batches plain --precision fp32`, one stacked run gives each member what a finetune.py run of
its own gives (history, best step, weights, up to float32 rounding); bad input is refused before any
training and leaves no folder behind; with stacking on, the DAG has one fine-tuning job per
(model, speaker), evaluation reads its outputs, and a new speaker runs only its own jobs.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_reruns import mark_complete, planned, report_data, run
from signals import noise_like, speech_like
from test_workflow import GENDA2025_JOBS, REPO, default_sheet, load_config, make_workdir, snakemake

from workflow_scripts import finetune, finetune_stacked
from workflow_scripts.files.audio import write_audio
from workflow_scripts.model.convtasnet import build_model, load_checkpoint, save_checkpoint
from workflow_scripts.files.folders import DataError

RECIPE = ["--batch-size", "2", "--crop-seconds", "0.25", "--lr", "1e-3", "--max-steps", "6", "--val-every", "2",
          "--patience", "3", "--seed", "7", "--device", "cpu", "--threads", "1"]


def write_speech_folder(folder: Path, num: int, seed: int) -> Path:
    rows = []
    for i in range(num):
        path = f"wavs/u{i:02d}.wav"
        audio = speech_like(6000 + 700 * (i % 4), 1000 * seed + i)
        write_audio(folder / path, audio)
        rows.append({"utt_id": f"u{i:02d}", "path": path, "text": "a tone", "duration_s": audio.size / 16000})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def speaker(tmp_path_factory) -> dict:
    """A generalist, two speech folders (two sources) of 8 utterances and a noise folder."""
    root = tmp_path_factory.mktemp("speaker")
    noises = root / "noises"
    rows = []
    for i in range(3):
        write_audio(noises / f"n{i}.wav", noise_like(9000 + 1000 * i, 50 + i))
        rows.append({"noise_id": f"n{i}", "path": f"n{i}.wav", "kind": "hum"})
    pd.DataFrame(rows).to_csv(noises / "noises.csv", index=False)
    torch.manual_seed(0)
    init = root / "generalist.pt"
    save_checkpoint(init, build_model("tiny"))
    return {"init": init, "noises": noises, "gt": write_speech_folder(root / "gt", 8, 1),
            "clone": write_speech_folder(root / "clone", 8, 2)}


def stacked_args(speaker: dict, members: list[tuple], *extra: str) -> list[str]:
    args = ["--init", str(speaker["init"]), "--noise-dir", str(speaker["noises"])]
    for speech, num_train, num_val, out_dir in members:
        args += ["--member", str(speech), str(num_train), str(num_val), str(out_dir)]
    return args + RECIPE + list(extra)


def test_stacked_run_equals_separate_finetune_runs(speaker, tmp_path, one_thread):
    # two data sizes of one source (nested subsets) and a second source
    members = [
        (speaker["gt"], 3, 2, tmp_path / "stacked" / "gt" / "small"),
        (speaker["gt"], 6, 2, tmp_path / "stacked" / "gt" / "large"),
        (speaker["clone"], 3, 2, tmp_path / "stacked" / "clone" / "small"),
    ]
    finetune_stacked.main(stacked_args(speaker, members, "--batches", "plain", "--precision", "fp32"))
    initial = load_checkpoint(speaker["init"])[0].state_dict()
    for speech, num_train, num_val, out_dir in members:
        alone = tmp_path / "alone" / out_dir.relative_to(tmp_path / "stacked")
        finetune.main(["--init", str(speaker["init"]), "--speech-dir", str(speech), "--num-train", str(num_train),
                       "--num-val", str(num_val), "--noise-dir", str(speaker["noises"]), "--out-dir", str(alone),
                       *RECIPE])
        assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in alone.iterdir())
        history = pd.read_csv(out_dir / "training_log.csv")
        expected = pd.read_csv(alone / "training_log.csv")
        assert list(history.columns) == list(expected.columns)
        assert list(history["step"]) == list(expected["step"]) == [0, 2, 4, 6]
        assert list(history["best"]) == list(expected["best"])
        np.testing.assert_allclose(history["val_sdr_db"], expected["val_sdr_db"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(history["train_loss"][1:], expected["train_loss"][1:], rtol=1e-4, atol=1e-4)

        model, checkpoint = load_checkpoint(out_dir / "model.pt")
        model_alone, checkpoint_alone = load_checkpoint(alone / "model.pt")
        training, training_alone = checkpoint["training"], checkpoint_alone["training"]
        assert training["stacked_with"] == 3
        assert training["best_step"] == training_alone["best_step"]
        same_keys = ["kind", "model_size", "recipe", "speech_dir", "noise_dir", "num_train", "num_val", "init"]
        assert {k: training[k] for k in same_keys} == {k: training_alone[k] for k in same_keys}
        assert training["init_val_sdr_db"] == pytest.approx(training_alone["init_val_sdr_db"], abs=1e-4)
        # float32 rounding, through Adam's normalised steps: where a weight's gradient is near zero,
        # the two runs' rounding (batched against separate products, whose order depends on the CPU's
        # kernels) can step it differently. So: almost every weight within 1e-4, none apart by a
        # whole Adam step (lr), and the difference small next to what fine-tuning moved the weights by
        stacked, separate = model.state_dict(), model_alone.state_dict()
        difference = torch.cat([(stacked[name] - value).flatten() for name, value in separate.items()])
        moved = torch.cat([(value - initial[name]).flatten() for name, value in separate.items()])
        assert (difference.abs() > 1e-4).double().mean() < 1e-3, out_dir
        assert difference.abs().max() < 1e-3, out_dir
        assert difference.norm() < 3e-3 * moved.norm(), out_dir
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_device_batches_train_every_member(speaker, tmp_path, one_thread):
    members = [(speaker["gt"], 3, 2, tmp_path / "gt"), (speaker["clone"], 6, 2, tmp_path / "clone")]
    finetune_stacked.main(stacked_args(speaker, members))  # --batches device, --precision fp32
    for *_, out_dir in members:
        history = pd.read_csv(out_dir / "training_log.csv")
        assert list(history["step"]) == [0, 2, 4, 6] and np.isfinite(history["val_sdr_db"]).all()
        assert (out_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "problem, error, message",
    [
        ("missing manifest", DataError, r"member 2 \(.*nospeech.*\): .*nospeech/manifest\.csv: file not found"),
        ("num_train too large", DataError, r"member 2 \(.*clone.*\): .*clone: 8 utterances, fewer than num_val"),
        ("duplicate out dir", ValueError, r"member 2 .*out dir .*first is also that of member 1"),
        ("si_sdri", ValueError, r"--val-metric si_sdri: stacked fine-tuning selects .* by validation SDR only"),
    ],
)
def test_bad_input_is_refused_before_training_leaving_nothing(speaker, tmp_path, monkeypatch, problem, error,
                                                              message):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(finetune_stacked, "train_stacked", no_training)
    monkeypatch.setattr(finetune_stacked, "load_noises", no_training)
    out = tmp_path / "out"
    members = [(speaker["gt"], 3, 2, out / "first"), (speaker["clone"], 3, 2, out / "second")]
    extra = []
    if problem == "missing manifest":
        members[1] = (tmp_path / "nospeech", 3, 2, out / "second")
    elif problem == "num_train too large":
        members[1] = (speaker["clone"], 7, 2, out / "second")
    elif problem == "duplicate out dir":
        members[1] = (speaker["clone"], 3, 2, out / "first")
    else:
        extra = ["--val-metric", "si_sdri"]
    with pytest.raises(error, match=message):
        finetune_stacked.main(stacked_args(speaker, members, *extra))
    assert not out.exists()


def test_a_failed_member_fails_the_job_and_nothing_is_written(speaker, tmp_path, monkeypatch, one_thread):
    real_train_stacked = finetune_stacked.train_stacked

    def second_diverges(*args, **kwargs):
        results = real_train_stacked(*args, **kwargs)
        results[1] = FloatingPointError("training diverged at step 3: loss not finite")
        return results

    monkeypatch.setattr(finetune_stacked, "train_stacked", second_diverges)
    members = [(speaker["gt"], 3, 2, tmp_path / "out" / "gt"), (speaker["clone"], 3, 2, tmp_path / "out" / "clone")]
    args = stacked_args(speaker, members)
    args[args.index("--max-steps") + 1] = "2"
    with pytest.raises(finetune_stacked.StackedTrainingError, match=r"member 2 \(.*clone.*\): training diverged"):
        finetune_stacked.main(args)
    assert not (tmp_path / "out").exists()



def test_a_killed_stacked_run_continues_from_its_resume_file(speaker, tmp_path, monkeypatch, one_thread):
    def members(root):
        return [(speaker["gt"], 3, 2, root / "gt"), (speaker["clone"], 6, 2, root / "clone")]

    finetune_stacked.main(stacked_args(speaker, members(tmp_path / "whole")))

    class SigtermAtThirdDraw(finetune_stacked.DeviceCropMixer):
        drawn = 0

        def draw(self):
            SigtermAtThirdDraw.drawn += 1
            if SigtermAtThirdDraw.drawn == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().draw()

    resume = tmp_path / "stack.resume.pt"
    killed = stacked_args(speaker, members(tmp_path / "resumed"), "--resume-file", str(resume), "--resume-every", "100")
    with monkeypatch.context() as patch:
        patch.setattr(finetune_stacked, "DeviceCropMixer", SigtermAtThirdDraw)
        with pytest.raises(SystemExit):
            finetune_stacked.main(killed)
    assert resume.is_file() and not (tmp_path / "resumed").exists()
    assert torch.load(resume, weights_only=False)["loop"]["step"] == 3

    finetune_stacked.main(killed)
    assert not resume.exists()
    for (*_, whole), (*_, resumed) in zip(members(tmp_path / "whole"), members(tmp_path / "resumed")):
        pd.testing.assert_frame_equal(pd.read_csv(resumed / "training_log.csv"), pd.read_csv(whole / "training_log.csv"))
        for name, value in load_checkpoint(whole / "model.pt")[0].state_dict().items():
            torch.testing.assert_close(load_checkpoint(resumed / "model.pt")[0].state_dict()[name], value, rtol=0, atol=0)


# ---- the rules ---------------------------------------------------------------------------------


def stacked_config(name: str) -> dict:
    return dict(load_config(name), finetune_stacking={"by": "speaker"})


def rule_counts(jobs) -> dict:
    return pd.Series([rule for rule, _ in jobs], dtype=object).value_counts().to_dict()


def test_demo_dag_has_one_stacked_job_per_speaker_and_model(tmp_path):
    config = stacked_config("config.yaml")
    workdir = make_workdir(tmp_path, config, default_sheet())
    jobs = planned(REPO, workdir)
    counts = rule_counts(jobs)
    n_speakers, n_models = 4, len(config["model_sizes"])
    n_conditions = len(config["sources"]) * len(config["data_sizes"])
    assert "finetune" not in counts
    assert counts["finetune_stacked"] == n_speakers * n_models
    # evaluated stacked too (config.yaml's evaluation.by: speaker): the generalist and the conditions
    assert counts["evaluate_stacked"] == n_speakers * n_models and "evaluate_finetuned" not in counts
    stacked_outputs = {path for rule, output in jobs if rule == "finetune_stacked" for path in output.split(", ")}
    # each member's model, training log, run config and loss plot
    assert len(stacked_outputs) == 4 * n_speakers * n_models * n_conditions
    # every fine-tuned model that evaluation reads is a stacked job's output
    run_log = run(REPO, workdir, "-n", "--printshellcmds")
    evaluated = set(re.findall(r"--member (results/finetune/\S+/model\.pt)", run_log))
    assert len(evaluated) == n_speakers * n_models * n_conditions and evaluated <= stacked_outputs


def test_paper_dag_stacks_each_speakers_conditions(tmp_path):
    sheet = (REPO / "configs" / "genda2025_speakers.tsv").read_text()
    workdir = make_workdir(tmp_path, stacked_config("configs/genda2025.yaml"), sheet)
    counts = rule_counts(planned(REPO, workdir))
    # 10 real speakers with gt (7 conditions) and 10 virtual ones (6), 3 model sizes: 60 jobs for 390 models
    assert counts["finetune_stacked"] == 10 * 3 and counts["finetune_stacked_no_gt"] == 10 * 3
    assert counts == GENDA2025_JOBS


@pytest.fixture(scope="module")
def touched_stacked(tmp_path_factory) -> Path:
    """The CI DAG with stacked fine-tuning and evaluation, every job marked complete (see test_reruns)."""
    config = stacked_config("tests/config/ci.yaml")
    config["evaluation"] = dict(config["evaluation"], by="speaker")
    workdir = make_workdir(
        tmp_path_factory.mktemp("stacked_reruns"),
        config,
        (REPO / "tests" / "config" / "ci_speakers.tsv").read_text(),
    )
    mark_complete(REPO, workdir)
    return workdir


def test_adding_a_speaker_runs_only_its_stacked_jobs(touched_stacked):
    workdir = touched_stacked
    sheet = (workdir / "speakers.tsv").read_text()
    try:
        (workdir / "speakers.tsv").write_text(sheet + "ciC\t13\n")
        jobs = planned(REPO, workdir)
    finally:
        (workdir / "speakers.tsv").write_text(sheet)
    for rule, output in jobs:
        assert "ciC" in output or rule in {"aggregate", "analyze", "all"}, (rule, output)
    counts = rule_counts(jobs)
    assert counts["finetune_stacked"] == 1 and counts["evaluate_stacked"] == 1
    assert not {"finetune", "evaluate_finetuned", "evaluate_generalist"} & set(counts)


def test_changing_the_precision_reruns_the_stacks_and_their_evaluations(touched_stacked):
    workdir = touched_stacked
    config_file = workdir / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    config["finetune_stacking"]["precision"] = "fp32"
    try:
        config_file.write_text(yaml.safe_dump(config))
        counts = rule_counts(planned(REPO, workdir))
    finally:
        config_file.write_text(original)
    # the generalist's evaluations are in the speakers' evaluation jobs: they run again too
    assert counts == {"finetune_stacked": 2, "evaluate_stacked": 2, "aggregate": 1, "analyze": 1, "all": 1}


def test_report_labels_the_stacked_loss_plots_as_the_finetune_rule_does(touched_stacked, tmp_path):
    report_html = tmp_path / "report.html"
    run(REPO, touched_stacked, "--report", str(report_html))
    html = report_html.read_text()
    results, categories = report_data(html, "results"), report_data(html, "categories")
    finetuned = [path for path in results if path.startswith("results/finetune/")]
    assert len(finetuned) == 2 * 2 * 2  # speakers x sources x data sizes
    for path in finetuned:
        _, _, model, source, size, speaker, _ = path.split("/")
        assert results[path]["labels"] == {"speaker": speaker, "source": source, "size": size}
        assert path in categories["Training curves"][f"fine-tuning ConvTasNet {model}"]


def test_stacked_rules_call_their_module_through_shell_with_a_log():
    text = (REPO / "rules" / "finetune.smk").read_text()
    stacked = text[text.index("else:"):]
    assert "python -m workflow_scripts.finetune_stacked" in stacked and "2> {log}" in stacked
    assert "log:" in stacked and "script:" not in stacked and "run:" not in stacked


@pytest.mark.slow
def test_ci_config_runs_end_to_end_with_stacked_fine_tuning(tmp_path):
    """One CI speaker through every rule with finetune_stacking and evaluation by speaker: one
    stacked job trains its four conditions, one job evaluates them and the generalist, and the
    tables have every condition scored."""
    config = load_config("tests/config/ci.yaml")
    config = dict(config, finetune_stacking={"by": "speaker", "precision": "fp32", "batches": "plain"},
                  evaluation=dict(config["evaluation"], by="speaker"))
    workdir = make_workdir(tmp_path, config, "speaker\tseed\nciA\t11\n")
    snakemake(workdir, "--cores", "2")
    log = (workdir / "logs" / "finetune_stacked" / "tiny" / "ciA.log").read_text()
    assert "on 4 conditions together" in log
    assert not (workdir / "logs" / "finetune").exists() and not (workdir / "logs" / "evaluate").exists()
    evaluation_log = (workdir / "logs" / "evaluate_stacked" / "tiny" / "ciA.log").read_text()
    assert evaluation_log.count("enhancing") == 5  # the generalist and the four fine-tuned models
    table = pd.read_csv(workdir / "results" / "summary.csv")
    finetuned = table[~table.condition.isin(["unprocessed", "generalist"])]
    assert len(finetuned) == 4 and finetuned[["SDRi", "SDR", "eSTOI"]].notna().all().all()
    for source in ("gt", "worldclone"):
        for size in ("3utt", "6utt"):
            info = yaml.safe_load((workdir / "results" / "finetune" / "tiny" / source / size / "ciA"
                                   / "config.yaml").read_text())
            assert info["stacked_with"] == 4 and info["precision"] == "fp32", info


def test_a_stack_counts_the_gpu_slots_it_claims(tmp_path, monkeypatch):
    workdir = make_workdir(tmp_path, stacked_config("config.yaml"), default_sheet())
    monkeypatch.setenv("GENDA_JOBS_PER_GPU", "4")
    monkeypatch.delenv("GENDA_STACK_SLOTS", raising=False)
    blocks = run(REPO, workdir, "-n").split("\n\n")
    units = {re.search(r"^\s+resources: .*\bgpu=(\d+)", block, re.M).group(1) for block in blocks
             if re.search(r"^rule finetune_stacked:", block, re.M)}
    assert units == {"3"}  # one of the GPU's four slots left beside the stack (tests/runtime/test_gpu.py)
    # and the job claims what Snakemake counted
    shells = run(REPO, workdir, "-n", "--printshellcmds")
    claimed = set(re.findall(r"workflow_scripts\.finetune_stacked .*--gpu-slots (\d+)", shells))
    assert claimed == {"3"}
