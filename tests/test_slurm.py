"""The SLURM profile: what it asks for per rule, and a slice of the CI DAG through a real
one-node SLURM cluster started on this machine (tests/slurm/cluster.sh): every job goes through
sbatch, GPU rules get a GPU from SLURM (fake GPUs here) and use the one they are given; a training
job stopped as at its time limit writes its resume file, and its retry continues from it."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, load_config, make_workdir

from workflow_scripts.model.convtasnet import load_checkpoint

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
# the generalist and its evaluation on one speaker
TARGETS = ["results/pretrain/tiny/model.pt", "results/eval/tiny/generalist/ciA.csv"]
RULES = {"build_background", "build_world", "pretrain", "score_mixtures", "evaluate_generalist"}
GPU_RULES = {"pretrain", "evaluate_generalist"}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    tools = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munge"]
    missing = [tool for tool in tools if shutil.which(tool, path=f"{os.environ['PATH']}:/usr/sbin") is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} not found); "
            "apt-get install slurmctld slurmd slurm-client munge (.ci/run does)"
        )
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (it writes /etc/slurm and runs munged as munge)")
    run_dir = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        ["bash", str(CLUSTER), "start", str(run_dir)], check=False, capture_output=True, text=True
    )
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stdout + started.stderr
    yield run_dir
    subprocess.run(["bash", str(CLUSTER), "stop", str(run_dir)], check=True)


def slurm_time(minutes: int) -> str:
    days, minutes = divmod(minutes, 24 * 60)
    clock = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


def job_info(job_id: str) -> dict[str, str]:
    """`scontrol show job` as key -> value (finished jobs stay for MinJobAge)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    )
    return dict(re.findall(r"(\S+?)=(\S*)", out.stdout))


def rule_resources() -> tuple[dict[str, str], set[str]]:
    """rule name -> its resources: block, for every rule of rules/*.smk; and the local rules."""
    found, local_rules = {}, set()
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        local = {
            name
            for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
            for name in re.findall(r"\w+", block)
        }
        local_rules |= local
        for body in re.split(r"\n(?=[ ]*rule[ \w]*:)", text)[1:]:
            header = body.strip().split(":")[0]
            # a rule made in a loop is named in its body: the stacked fine-tunes and evaluations
            names = stacked_rule_names(smk.stem) if header == "rule" else [header.removeprefix("rule ")]
            block = re.search(r"^([ ]*)resources:\n((?:\1    .*\n)+)", body, re.M)
            for name in names:
                found[name] = block.group(2) if block else ""
    return found, local_rules


def stacked_rule_names(rule_file: str) -> list[str]:
    """The stacked rules (`finetune_stacked*` or `evaluate_stacked*`, by the rule file) that the paper
    config defines with fine-tuning and evaluation by speaker."""
    listed = subprocess.run(
        [*SNAKEMAKE, "--list-rules", "--configfile", "configs/genda2025.yaml",
         "--config", "finetune_stacking={by: speaker}", "evaluation={by: speaker}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    return [name for name in listed if name.startswith(f"{rule_file}_stacked")]


def test_slurm_profile_sizes_every_rule_and_asks_a_gpu_where_the_rule_uses_one():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    defaults, per_rule = profile["default-resources"], profile["set-resources"]
    assert {"runtime", "mem_mb", "cpus_per_task"} <= set(defaults)
    assert not {"slurm_account", "slurm_partition"} & set(defaults), "account and partition are the user's"
    rules, local_rules = rule_resources()
    assert set(per_rule) <= set(rules), f"unknown rules: {set(per_rule) - set(rules)}"
    missing = set(rules) - local_rules - set(per_rule)
    assert not missing, f"rules the profile gives no resources: {missing}"
    for rule, resources in per_rule.items():
        assert {"runtime", "mem_mb", "cpus_per_task"} <= set(resources), rule
        assert not {"tasks", "tasks_per_gpu", "cpus_per_gpu"} & set(resources), rule  # never --ntasks-per-gpu
        uses_gpu = re.search(r"\bgpu=", rules[rule]) is not None
        from_config = re.search(r"\bgpu=([A-Z_]+)", rules[rule])
        if from_config:  # its GPUs come from the config (pretrain: generalist.pretrain_gpus; score_mixtures:
            # one where evaluation.asr transcribes with Whisper), so the profile must not set them
            assert "gpu" not in resources, rule
            continue
        assert resources.get("gpu", 0) == (1 if uses_gpu else 0), rule


def slurm_snakemake(workdir: Path, *targets: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a snakemake run of `targets` through the slurm profile."""
    cmd = SNAKEMAKE + [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        # no slurmdbd here: job states come from squeue (slurm.conf has MinJobAge=600)
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        "--latency-wait",
        "5",
        *targets,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE"))}
    # the jobs (sbatch --export=ALL) find this Python as `python`, as in an activated venv
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return cmd, env


@pytest.mark.slow
def test_ci_slice_runs_through_sbatch_with_the_slurm_profile(slurm_cluster, tmp_path):
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), (
        "snakemake-executor-plugin-slurm missing"
    )
    workdir = make_workdir(
        tmp_path,
        load_config("tests/config/ci.yaml"),
        (REPO / "tests" / "config" / "ci_speakers.tsv").read_text(),
    )
    cmd, env = slurm_snakemake(workdir, *TARGETS)
    run = subprocess.run(
        cmd, check=False, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=900
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]

    model, _ = load_checkpoint(workdir / TARGETS[0])
    assert sum(p.numel() for p in model.parameters()) > 0
    scores = pd.read_csv(workdir / TARGETS[1])
    world = load_config("tests/config/ci.yaml")["demo_world"]
    assert len(scores) == world["num_test_utterances"] * world["num_noises"] and scores["sdr_db"].notna().all()

    # every job was a SLURM batch job: submitted, completed, and logged by the plugin
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == len(RULES), output[-4000:]
    completed = (slurm_cluster / "log" / "jobcomp.log").read_text()
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())["set-resources"]
    rules_seen = set()
    for job_id in submitted:
        assert re.search(rf"^JobId={job_id} .*JobState=COMPLETED", completed, re.M), job_id
        info = job_info(job_id)
        rule = info["Comment"].removeprefix("rule_").split("_wildcards")[0]
        rules_seen.add(rule)
        assert info["BatchFlag"] == "1", info
        assert ("gres:gpu:1" in info.get("TresPerJob", "")) == (rule in GPU_RULES), (rule, info)
        assert info.get("NtasksPerTRES", "0") in ("0", ""), info  # never --ntasks-per-gpu
        # the profile's size for the rule is what SLURM allocated
        asked = profile[rule]
        assert info["MinMemoryNode"] == f"{asked['mem_mb']}M", (rule, info)
        assert info["NumCPUs"] == str(asked["cpus_per_task"]), (rule, info)
        assert info["TimeLimit"] == slurm_time(asked["runtime"]), (rule, info)
    assert rules_seen == RULES
    assert {p.name for p in (workdir / ".snakemake" / "slurm_logs").iterdir()} >= {f"rule_{r}" for r in RULES}

    # GPU jobs used the GPU SLURM gave them
    for log in ["logs/pretrain/tiny.log", "logs/evaluate/tiny/generalist/ciA.log"]:
        assert re.search(r"job on GPU 0 \(given by SLURM job \d+\)", (workdir / log).read_text()), log
    assert not (workdir / "results" / "pretrain" / "tiny.resume.pt").exists()


def rule_jobs(rule: str) -> dict[str, str]:
    """SLURM job id -> state, of every job of `rule` the cluster still knows (MinJobAge)."""
    listed = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %k %T"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    jobs = {}
    for line in filter(None, listed):
        job_id, comment, state = line.split()
        if comment.removeprefix("rule_").split("_wildcards")[0] == rule:
            jobs[job_id] = state
    return jobs


@pytest.mark.slow
def test_a_pretraining_job_stopped_at_its_time_limit_resumes_in_its_retry(slurm_cluster, tmp_path):
    # What SLURM does at a job's time limit, emulated with scancel once the job has written its
    # first resume file (a real limit is whole minutes, and when it falls depends on the
    # machine's speed): SIGCONT and SIGTERM to every process of the job, SIGKILL after KillWait
    # (5 s on the test cluster). The job then ends CANCELLED rather than TIMEOUT; snakemake takes
    # both as a failed job and, with the profile's `retries: 1`, submits it again.
    config = load_config("tests/config/ci.yaml")
    max_steps = 200  # long enough that the job is still training when scancel reaches it
    config["generalist"]["pretrain"].update(max_steps=max_steps, val_every=50, patience=10)
    workdir = make_workdir(tmp_path, config, (REPO / "tests" / "config" / "ci_speakers.tsv").read_text())
    resume_file, job_log = workdir / "results/pretrain/tiny.resume.pt", workdir / "logs/pretrain/tiny.log"
    cmd, env = slurm_snakemake(workdir, "results/pretrain/tiny/model.pt")
    earlier = set(rule_jobs("pretrain"))  # an earlier test's pretrain jobs the cluster still lists

    def own_jobs() -> dict[str, str]:
        return {job: state for job, state in rule_jobs("pretrain").items() if job not in earlier}

    with open(tmp_path / "snakemake.log", "w") as out:
        run = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (resume_file.exists() and own_jobs()):
            assert run.poll() is None, (tmp_path / "snakemake.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no resume file within 900 s"
            time.sleep(0.2)
        (first_job,) = own_jobs()
        subprocess.run(["scancel", first_job], check=True)
        # the first attempt's log, before the retry writes its own over it
        stopped = None
        while stopped is None and run.poll() is None:
            stopped = re.search(r"SIGTERM: stopped after step (\d+); run again to continue from (\S+)",
                                job_log.read_text() if job_log.exists() else "")
            time.sleep(0.1)
        assert run.wait(timeout=900) == 0, (tmp_path / "snakemake.log").read_text()[-6000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert stopped is not None, "the stopped job did not log its SIGTERM stop"
    step, written = int(stopped.group(1)), stopped.group(2)
    assert written == "results/pretrain/tiny.resume.pt" and 0 < step < max_steps

    jobs = own_jobs()
    assert jobs.pop(first_job) == "CANCELLED"
    assert list(jobs.values()) == ["COMPLETED"], jobs  # the retry
    assert f"resumed from results/pretrain/tiny.resume.pt at step {step}" in job_log.read_text()
    assert not resume_file.exists()
    history = pd.read_csv(workdir / "results/pretrain/tiny/training_log.csv")
    assert list(history["step"]) == list(range(0, max_steps + 1, 50))
    load_checkpoint(workdir / "results/pretrain/tiny/model.pt")
