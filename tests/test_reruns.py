"""What a change reruns, by dry run, and the HTML report, on the CI DAG marked complete with
`snakemake --touch` (no job computes anything: placeholder outputs, real provenance records).

(a) a speaker added to the sheet: only its jobs, the aggregate and the analysis;
(b) library code edited in workflow_scripts/: nothing;
(c) a fine-tuning parameter changed: the fine-tuning jobs and what depends on them only;
and `snakemake --report` holds every report() output with its category and labels.
The computed outputs themselves are checked by test_workflow's end-to-end run.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, load_config, make_workdir

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_PARTS = ["Snakefile", "rules", "schemas", "report", "envs", "profiles", "workflow_scripts"]
CI_SPEAKERS = ["ciA", "ciB"]


def run(workflow: Path, workdir: Path, *args: str) -> str:
    cmd = SNAKEMAKE + [
        "--snakefile",
        str(workflow / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def planned(workflow: Path, workdir: Path) -> list[tuple[str, str]]:
    """(rule, output) of every job a dry run would execute."""
    jobs = []
    for block in run(workflow, workdir, "-n").split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        output = re.search(r"^\s+output: (.*)$", block, re.M)
        if rule:
            jobs.append((rule.group(1), output.group(1) if output else ""))
    return jobs


def directory_patterns(workflow: Path) -> list[re.Pattern]:
    """The directory() outputs of the rules, as regular expressions."""
    patterns = []
    for smk in (workflow / "rules").glob("*.smk"):
        for template in re.findall(r'directory\(\s*"([^"]+)"', smk.read_text()):
            parts = re.split(r"(\{[^}]+\})", template)
            patterns.append(
                re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))
            )
    return patterns


def placeholder(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(2, 1))
        fig.text(0.1, 0.5, f"placeholder: {path.name}")
        fig.savefig(path)
        plt.close(fig)
    elif path.suffix == ".md":
        path.write_text(f"| placeholder | {path.name} |\n|---|---|\n| not computed | by this test |\n")
    else:
        path.write_text("")


@pytest.fixture(scope="module")
def touched(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the workflow and a CI working folder whose every job is marked complete."""
    root = tmp_path_factory.mktemp("reruns")
    workflow = root / "workflow"
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, workflow / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            workflow.mkdir(exist_ok=True)
            shutil.copy2(source, workflow / part)
    (root / "run").mkdir()
    workdir = make_workdir(
        root / "run",
        load_config("tests/config/ci.yaml"),
        (REPO / "tests" / "config" / "ci_speakers.tsv").read_text(),
    )
    mark_complete(workflow, workdir)
    return workflow, workdir


def mark_complete(workflow: Path, workdir: Path) -> None:
    """Every planned job's outputs made as placeholders, then every job "run" by --touch:
    outputs get modification times in DAG order, jobs their provenance."""
    is_directory = directory_patterns(workflow)
    jobs = planned(workflow, workdir)
    assert jobs
    for _, output in jobs:
        for name in filter(None, (p.strip() for p in output.split(","))):
            if any(pattern.fullmatch(name) for pattern in is_directory):
                (workdir / name).mkdir(parents=True, exist_ok=True)
            else:
                placeholder(workdir / name)
    run(workflow, workdir, "--touch", "--forceall", "--cores", "1")
    assert planned(workflow, workdir) == [], "the touched DAG is not complete"


def test_adding_a_speaker_reruns_only_its_jobs_and_the_aggregate(touched):
    workflow, workdir = touched
    sheet = (workdir / "speakers.tsv").read_text()
    try:
        (workdir / "speakers.tsv").write_text(sheet + "ciC\t13\n")
        jobs = planned(workflow, workdir)
    finally:
        (workdir / "speakers.tsv").write_text(sheet)
    assert jobs
    for rule, output in jobs:
        assert "ciC" in output or rule in {"aggregate", "analyze", "all"}, (rule, output)
    assert {"build_world", "finetune", "evaluate_generalist", "evaluate_finetuned"} <= {r for r, _ in jobs}
    assert not {"pretrain", "build_background"} & {r for r, _ in jobs}


def test_editing_library_code_reruns_nothing(touched):
    workflow, workdir = touched
    for module in ["files/audio.py", "model/convtasnet.py", "runtime/gpu.py", "finetune.py", "tts/__init__.py"]:
        path = workflow / "workflow_scripts" / module
        path.write_text(path.read_text() + "\n# a comment added after the run\n")
    assert planned(workflow, workdir) == []


def test_changing_a_finetune_parameter_reruns_finetuning_and_downstream_only(touched):
    workflow, workdir = touched
    config_file = workdir / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    config["finetune"]["lr"] = config["finetune"]["lr"] / 2
    try:
        config_file.write_text(yaml.safe_dump(config))
        jobs = planned(workflow, workdir)
    finally:
        config_file.write_text(original)
    rules = [rule for rule, _ in jobs]
    n_finetuned = (
        len(CI_SPEAKERS) * len(config["sources"]) * len(config["data_sizes"]) * len(config["model_sizes"])
    )
    assert rules.count("finetune") == n_finetuned
    assert rules.count("evaluate_finetuned") == n_finetuned
    assert set(rules) == {"finetune", "evaluate_finetuned", "aggregate", "analyze", "all"}


def report_data(html: str, name: str) -> dict:
    """One of the JSON objects the HTML report embeds (`var results = {...};`)."""
    match = re.search(rf"var {name} = (\{{.*?\}});\n", html, re.S)
    assert match, f"no {name} in the report"
    return json.loads(match.group(1))


def test_report_shows_every_table_and_plot_with_a_caption_by_question(touched, tmp_path):
    workflow, workdir = touched
    report_html = tmp_path / "report.html"
    run(workflow, workdir, "--report", str(report_html))
    html = report_html.read_text()
    results, categories = report_data(html, "results"), report_data(html, "categories")
    assert set(categories) == {"PSE results", "TTS quality", "Analysis", "Training curves"}

    # the tables as HTML pages the browser shows (markdown would be downloaded)
    for table, category in (("results/summary.html", "PSE results"), ("results/tts_summary.html", "TTS quality")):
        assert results[table]["mime_type"] == "text/html", table
        assert embedded(results[table]) == (workdir / "results" / table.split("/")[-1]).read_bytes()
        assert table in categories[category]["Other"]
    for plot in [
        "results/plots/sdri_by_condition.png",
        "results/plots/secs_vs_sdri.png",
        "results/pretrain/tiny/loss.png",
    ]:
        assert embedded(results[plot]).startswith(b"\x89PNG"), plot
    # every item says what it shows; within a category every item has the same label keys
    for path, result in results.items():
        assert len(result["caption"]) > 200, path
    for category in categories.values():
        for paths in category.values():
            assert len({tuple(sorted(results[p]["labels"])) for p in paths}) == 1, paths

    finetuned = [path for path in results if path.startswith("results/finetune/")]
    assert len(finetuned) == len(CI_SPEAKERS) * 2 * 2
    for path in finetuned:
        _, _, model, source, size, speaker, _ = path.split("/")
        assert results[path]["labels"] == {"speaker": speaker, "source": source, "size": size}
        assert path in categories["Training curves"][f"fine-tuning ConvTasNet {model}"]


def embedded(result: dict) -> bytes:
    return base64.b64decode(result["data_uri"].split(";base64,", 1)[1])
