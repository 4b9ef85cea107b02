"""The Snakemake workflow: config validation, the DAG, and a tiny end-to-end run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_workdir(tmp_path: Path, config: dict, speakers: str) -> Path:
    """A working folder with its own config and speaker sheet (absolute paths)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "speakers.tsv").write_text(speakers)
    config = dict(config, speakers=str(tmp_path / "speakers.tsv"))
    if "demo_world" in config:
        config["demo_world"] = dict(config["demo_world"], sentences=str(REPO / config["demo_world"]["sentences"]))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def job_env() -> dict:
    """The environment for snakemake: its jobs call `python`, the interpreter running the tests,
    whichever way they were started."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """Snakemake on the project's Snakefile in `workdir`, with the folder's own config."""
    return SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                        "--configfile", str(workdir / "config.yaml"), *args]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, *args)
    result = subprocess.run(cmd, capture_output=True, text=True, env=job_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def planned_jobs(workdir: Path) -> list[tuple[str, str]]:
    """(rule, output) of every job a dry run would execute."""
    out = snakemake(workdir, "-n", "--printshellcmds").stdout
    jobs = []
    for block in out.split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        output = re.search(r"^\s+output: (.*)$", block, re.M)
        if rule:
            jobs.append((rule.group(1), output.group(1) if output else ""))
    return jobs


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def default_sheet() -> str:
    return (REPO / "configs" / "demo_speakers.tsv").read_text()


def test_default_dag_has_every_condition(tmp_path):
    config = load_config("config.yaml")
    workdir = make_workdir(tmp_path, config, default_sheet())
    counts = pd.Series([rule for rule, _ in planned_jobs(workdir)]).value_counts()
    n_speakers, n_sizes = 4, len(config["data_sizes"])
    n_sources = len(config["sources"])
    assert counts["build_world"] == n_speakers
    # stacked by speaker: one fine-tuning and one evaluation job per (model size, speaker), for
    # n_sources x n_sizes fine-tuned models and the generalist each
    assert config["finetune_stacking"]["by"] == config["evaluation"]["by"] == "speaker"
    assert counts["finetune_stacked"] == n_speakers * len(config["model_sizes"])
    assert counts["evaluate_stacked"] == n_speakers * len(config["model_sizes"])
    assert not {"finetune", "evaluate_generalist", "evaluate_finetuned"} & set(counts.index)
    assert counts["synthesize"] == n_speakers * (n_sources - 1)
    assert counts["score_tts"] == n_speakers * n_sources
    assert counts["pretrain"] == len(config["model_sizes"])
    assert counts["aggregate"] == 1


GENDA2025_JOBS = {
    # 20 speakers (each its mixtures scored once); gt for the 10 real ones at 6min; 3 TTS systems at 6min
    # and 30min; 3 model sizes
    "download": 3, "download_models": 4, "prepare_speaker": 20, "prepare_gt": 10, "prepare_challenge_test": 20,
    "prepare_generalist": 3, "clone_voice": 60, "synthesize": 60, "score_tts": 70, "score_tts_cpu": 70, "score_mixtures": 20,
    # fine-tuning stacked by speaker (the config's default): one job per model size and speaker, 10 real
    # speakers with gt (7 conditions) and 10 virtual ones (6), for 3 * (10 + 20 * 6) = 390 models
    "finetune_stacked": 3 * 10, "finetune_stacked_no_gt": 3 * 10,
    # evaluation likewise (evaluation.by: speaker): the generalist and a speaker's fine-tuned models
    "evaluate_stacked": 3 * 10, "evaluate_stacked_no_gt": 3 * 10,
    "export_task1": 20, "export_task2": 20, "export_zip": 2, "aggregate": 1, "analyze": 1, "all": 1,
}
# with finetune_stacking.by: none and evaluation.by: none, one job per condition instead
GENDA2025_PER_CONDITION_JOBS = {
    **{rule: n for rule, n in GENDA2025_JOBS.items() if not rule.startswith(("finetune_stacked", "evaluate_stacked"))},
    "finetune": 3 * (10 + 20 * 6), "evaluate_generalist": 60, "evaluate_finetuned": 3 * (10 + 20 * 6),
}


def genda2025_workdir(tmp_path: Path) -> Path:
    config = load_config("configs/genda2025.yaml")
    return make_workdir(tmp_path, config, (REPO / "configs" / "genda2025_speakers.tsv").read_text())


def test_paper_grid_dag_is_built_in_seconds(tmp_path):
    workdir = genda2025_workdir(tmp_path)
    start = time.monotonic()
    counts = pd.Series([rule for rule, _ in planned_jobs(workdir)]).value_counts().to_dict()
    elapsed_s = time.monotonic() - start
    assert counts == GENDA2025_JOBS
    assert elapsed_s < 60, f"dry run of the paper grid took {elapsed_s:.1f} s"
    assert sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake") == ["config.yaml", "speakers.tsv"]


def test_paper_grid_fine_tunes_and_evaluates_per_condition_one_setting_away(tmp_path):
    config = load_config("configs/genda2025.yaml")
    config = dict(config, finetune_stacking={"by": "none"}, evaluation=dict(config["evaluation"], by="none"))
    workdir = make_workdir(tmp_path, config, (REPO / "configs" / "genda2025_speakers.tsv").read_text())
    counts = pd.Series([rule for rule, _ in planned_jobs(workdir)]).value_counts().to_dict()
    assert counts == GENDA2025_PER_CONDITION_JOBS


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["conditions"].update(gt=["1h"]), "'conditions.gt' names data sizes that 'data_sizes' does not"),
        (lambda c: c.update(sources=["gt"]), "give either 'sources'"),
        (lambda c: c.update(model_sizes=["tiny", "large"]), "the challenge released no large generalist"),
        (lambda c: c["export"]["task2"].update(size="1h"), "export.task2: 'xtts' at size '1h'"),
        (lambda c: c["export"]["task1"].update(tts="nosuchtts"), "export.task1.tts 'nosuchtts'"),
        (lambda c: c["resources"].pop("musan"), "'resources' has no entry 'musan'"),
        (lambda c: c["resources"]["musan"].update(md5="abc"), "md5"),
    ],
    ids=["condition-size", "sources-and-conditions", "challenge-large", "export-condition", "export-tts",
         "missing-resource", "bad-checksum"],
)
def test_malformed_paper_config_is_rejected(tmp_path, mutate, message):
    config = load_config("configs/genda2025.yaml")
    mutate(config)
    workdir = make_workdir(tmp_path, config, (REPO / "configs" / "genda2025_speakers.tsv").read_text())
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    assert not (workdir / "resources").exists() and not (workdir / "data").exists()


@pytest.mark.parametrize(
    "sheet, message",
    [
        ("speaker\tgroup\tchallenge_id\nF0\treal\tF0\nX1\treal\t\n",
         "row 2 (speaker X1): no enrollment clip: give `challenge_id` or `enrollment`"),
        ("speaker\tgroup\tenrolment\nF0\treal\tx.wav\n", "row 1 (speaker F0): Additional properties"),
        ("speaker\tgroup\tchallenge_id\tlibritts_id\nV0\tvirtual\tVirtualF0\t12\n",
         "row 1 (speaker V0): a virtual speaker has no LibriTTS speaker"),
        ("speaker\tgroup\tchallenge_id\nF0\treal\tG7\n", "column challenge_id: 'G7' does not match"),
        ("speaker\tgroup\tenrollment\tsentences\tnoises\nMe\treal\tme.wav\ts.txt\tn\n",
         "row 1 (speaker Me): no test set"),
        ("speaker\tgroup\tchallenge_id\tgt\nF0\treal\tF0\tno/such/folder\n",
         "row 1 (speaker F0): `gt`: folder not found: no/such/folder"),
        ("speaker\tseed\tgroup\tchallenge_id\nF0\t1\treal\tF0\n", "`seed` is only for group demo"),
        ("speaker\tseed\tchallenge_id\nspk01\t1\tF0\n", "a demo speaker is built from its seed"),
    ],
    ids=["no-enrollment", "unknown-column", "virtual-libritts", "bad-challenge-id", "no-test-set",
         "missing-gt-folder", "seed-on-real", "demo-with-files"],
)
def test_malformed_real_speaker_rows_are_rejected_naming_sheet_and_row(tmp_path, sheet, message):
    workdir = make_workdir(tmp_path, load_config("configs/genda2025.yaml"), sheet)
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{workdir / 'speakers.tsv'}: " in output and message in output, output[-2000:]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(model_sizes=["huge"]), "huge"),
        (lambda c: c["data_sizes"]["8utt"].update(train=0), "train"),
        (lambda c: c.pop("finetune"), "finetune"),
        (lambda c: c["finetune"].update(lr="fast"), "fast"),
        (lambda c: c.update(sources=["gt", "nosuchtts"]), "nosuchtts"),
        (lambda c: c["demo_world"].update(test_snrs_db=[]), "test_snrs_db"),
    ],
    ids=["unknown-model-size", "zero-train", "missing-recipe", "bad-lr", "undefined-tts", "empty-snr-list"],
)
def test_malformed_config_is_rejected_with_a_clear_message(tmp_path, mutate, message):
    config = load_config("config.yaml")
    mutate(config)
    workdir = make_workdir(tmp_path, config, default_sheet())
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


@pytest.mark.parametrize(
    "sheet, message",
    [
        ("speaker\tseed\nspk01\t1\nspk01\t2\n", "duplicate speaker ids: spk01"),
        ("speaker\tseed\nspk/01\t1\n", "spk/01"),
        ("speaker\tseed\nspk01\tnotanumber\n", "notanumber"),
    ],
    ids=["duplicate-id", "bad-id", "bad-seed"],
)
def test_malformed_speaker_sheet_is_rejected(tmp_path, sheet, message):
    workdir = make_workdir(tmp_path, load_config("config.yaml"), sheet)
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_parsing_the_snakefile_writes_nothing(tmp_path):
    workdir = make_workdir(tmp_path, load_config("config.yaml"), default_sheet())
    before = sorted(p.name for p in workdir.iterdir())
    snakemake(workdir, "-n")
    after = sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake")
    assert after == before


def output_files(workdir: Path) -> dict[Path, int]:
    """Every visible file under data/ and results/, with its modification time."""
    files = {}
    for top in ("data", "results"):
        for path in (workdir / top).rglob("*"):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(workdir).parts):
                files[path] = path.stat().st_mtime_ns
    return files


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    """Return once `path` exists; fail if snakemake ends first or the guard time passes."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (exit {process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.5)


def killed_and_restarted(workdir: Path) -> None:
    """Run the workflow in `workdir`, SIGKILL Snakemake's whole process group once fine-tuning is
    under way, unlock, and run again: the restart completes and recomputes nothing finished."""
    with open(workdir / "first_run.log", "w") as log:
        process = subprocess.Popen(snakemake_command(workdir, "--cores", "2"), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=job_env())
        try:
            # the generalist's job is finished (snakemake starts a fine-tune only then): fine-tuning
            # and evaluation jobs are under way
            wait_for(workdir / "logs" / "finetune" / "tiny", process, timeout_s=900)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0, "the run finished before it could be killed"
    # as after any hard kill, the working directory is still locked: release it as a user would
    snakemake(workdir, "--unlock")
    # what the restart would run; everything else present now is finished work
    pending = planned_jobs(workdir)
    assert any(rule == "aggregate" for rule, _ in pending)
    pending_outputs = [p.strip().rstrip("/") for _, output in pending for p in output.split(",") if p.strip()]

    def is_pending(path: Path) -> bool:
        relative = str(path.relative_to(workdir))
        return any(relative == p or relative.startswith(f"{p}/") for p in pending_outputs)

    finished = {path: mtime for path, mtime in output_files(workdir).items() if not is_pending(path)}
    assert any("pretrain" in str(path) for path in finished)
    snakemake(workdir, "--cores", "2")
    changed = [str(path) for path, mtime in finished.items() if path.stat().st_mtime_ns != mtime]
    assert not changed, f"finished outputs were recomputed: {changed[:5]}"
    assert planned_jobs(workdir) == []


@pytest.mark.slow
def test_ci_config_runs_end_to_end_reproducibly_and_adding_a_speaker_reruns_only_it(tmp_path):
    """The CI setting end to end; a second run from scratch, killed hard mid-way and restarted,
    recomputes nothing finished and gives the same tables byte for byte; a new speaker in the
    sheet plans only its own jobs."""
    config = load_config("tests/config/ci.yaml")
    sheet = (REPO / "tests" / "config" / "ci_speakers.tsv").read_text()
    workdir = make_workdir(tmp_path / "whole", config, sheet)
    snakemake(workdir, "--cores", "2")

    summary = (workdir / "results" / "summary.md").read_text()
    for condition in ["generalist", "gt 3utt", "gt 6utt", "worldclone 3utt", "worldclone 6utt"]:
        assert f"| {condition} |" in summary
    table = pd.read_csv(workdir / "results" / "summary.csv")
    finetuned = table[~table.condition.isin(["unprocessed", "generalist"])]
    assert finetuned[["SDRi", "SDR", "eSTOI", "PESQ"]].notna().all().all()
    for plot in ["sdri_by_condition.png", "secs_vs_sdri.png"]:
        assert (workdir / "results" / "plots" / plot).read_bytes()[:4] == b"\x89PNG"

    # nothing left to do
    assert planned_jobs(workdir) == []

    # reproducible: every job run again from scratch (data, training, scoring) with the same
    # seeds on the same machine, here in a run killed mid-way and restarted, gives the same
    # tables, byte for byte
    restarted = make_workdir(tmp_path / "restarted", config, sheet)
    killed_and_restarted(restarted)
    for name in ["summary.csv", "summary_per_speaker.csv", "summary.md", "tts_summary.md"]:
        assert (restarted / "results" / name).read_bytes() == (workdir / "results" / name).read_bytes(), (
            f"{name} differs in the run from scratch")

    # a new speaker: only its own jobs and the aggregate ones
    (workdir / "speakers.tsv").write_text(sheet + "ciC\t13\n")
    jobs = planned_jobs(workdir)
    assert jobs
    for rule, output in jobs:
        assert "ciC" in output or rule in {"aggregate", "analyze", "all"}, (rule, output)
    assert {"build_world", "clone_voice", "synthesize", "finetune", "evaluate_generalist"} <= {r for r, _ in jobs}
    assert "pretrain" not in {r for r, _ in jobs}


def test_rules_call_modules_through_shell_with_logs():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule_body in re.split(r"\n[ ]*rule[ :]", text)[1:]:  # rules in if-blocks and loops too
            name = rule_body.split(":")[0] or "(named in its body)"
            assert "log:" in rule_body, f"{smk.name}: rule {name} has no log"
            assert "python -m workflow_scripts." in rule_body, f"{smk.name}: rule {name} calls no module"
            assert "2> {log}" in rule_body, f"{smk.name}: rule {name} does not send stderr to its log"
            assert "script:" not in rule_body and "run:" not in rule_body


def test_every_module_has_main():
    steps = ["build_world", "build_background", "download", "prepare_speaker", "prepare_gt", "prepare_challenge_test",
             "prepare_generalist", "prepare_pretrain_pool", "clone_voice", "synthesize", "score_tts",
             "pretrain", "finetune", "finetune_stacked", "evaluate", "aggregate", "export_task1", "export_task2",
             "export_zip", "download_models"]
    for step in steps:
        source = (REPO / "workflow_scripts" / f"{step}.py").read_text()
        assert "def main(" in source and "argparse" in source, step


def test_demo_config_matches_schema():
    # the shipped configs validate (snakemake does this on every run; here without snakemake)
    import jsonschema

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    for name in ["config.yaml", "tests/config/ci.yaml", "configs/genda2025.yaml"]:
        jsonschema.validate(load_config(name), schema)



def test_lint_is_clean_and_snakefmt_leaves_rules_unchanged():
    lint = subprocess.run(SNAKEMAKE + ["--lint", "--snakefile", str(REPO / "Snakefile")],
                          cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "rules").glob("*.smk")))]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr
