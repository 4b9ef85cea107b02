"""The package's layout: steps apart from libraries, each rule calling the step of its name.

`workflow_scripts/` holds at its top level only step modules, one per rule; library code
lives in subpackages. A step never imports another step (what two steps share belongs in
a library), and no library imports a step.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow_scripts"
STEPS = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
LIBRARIES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())

# Rules whose shell calls a step of another name, and why.
RULE_STEP_EXCEPTIONS = {
    # one step, two rules: the generalist's outputs have no source and size wildcards
    "evaluate_generalist": "evaluate",
    "evaluate_finetuned": "evaluate",
    # the generalist and every fine-tuned model of a speaker in one job, made once per
    # stack shape as the stacked fine-tuning rule is
    "evaluate_stacked": "evaluate",
    "evaluate_stacked_no_gt": "evaluate",
    # a training speaker's model on another speaker's test set: a wildcard more
    "evaluate_crossed": "evaluate",
    # the stacked fine-tuning rule is made once per stack shape (a speaker without real
    # speech has no gt member, and a rule's outputs cannot depend on its wildcards)
    "finetune_stacked_no_gt": "finetune_stacked",
}
LARGEST_MODULE_LINES = 600
COMMON_SMK_LINES = 400
RESULTS_MD_LINES = 400


def imported_modules(path: Path) -> set[str]:
    """Every `workflow_scripts...` module a file imports (a `from workflow_scripts import x`
    counts as importing `workflow_scripts.x`)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in modules if m.startswith("workflow_scripts.")}


def imported_steps(path: Path) -> list[str]:
    return sorted({m.split(".")[1] for m in imported_modules(path) if m.count(".") == 1} & set(STEPS))


def test_top_level_holds_steps_and_libraries_only():
    assert set(LIBRARIES) >= {"files", "model", "runtime", "scoring", "training", "tts", "world"}
    for library in LIBRARIES:
        docstring = ast.get_docstring(ast.parse((PACKAGE / library / "__init__.py").read_text()))
        assert docstring, f"workflow_scripts/{library}/__init__.py: no one-line purpose"
    for step in STEPS:
        source = (PACKAGE / f"{step}.py").read_text()
        assert "def main(" in source and "argparse" in source, f"{step}.py is not a step (no argparse main)"


def test_no_step_imports_another_step():
    offenders = {
        f"workflow_scripts/{step}.py": found
        for step in STEPS
        if (found := [s for s in imported_steps(PACKAGE / f"{step}.py") if s != step])
    }
    assert not offenders, f"steps import steps (move what they share into a library): {offenders}"


def test_no_library_imports_a_step():
    offenders = {
        str(path.relative_to(REPO)): found
        for library in LIBRARIES
        for path in sorted((PACKAGE / library).rglob("*.py"))
        if (found := imported_steps(path))
    }
    assert not offenders, f"library modules import steps: {offenders}"


def rule_steps(smk: Path) -> list[tuple[str | None, str]]:
    """(rule name, step module its shell calls) for each rule of a rule file; None for the
    name of a rule named in its body (`rule:` then `name: expression`)."""
    pairs = []
    blocks = re.split(r"^\s*rule\b", smk.read_text(), flags=re.M)[1:]
    for block in blocks:
        header, _, body = block.partition("\n")
        name = header.strip().rstrip(":").strip() or None
        body = re.split(r"^\S", body, flags=re.M)[0]  # up to the next top-level statement
        called = re.findall(r"python -m workflow_scripts\.(\w+)", body)
        pairs.append((name, called[0] if called else ""))
    return pairs


def listed_rules(*config_args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules", "--quiet", *config_args],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip() and not line.startswith(" ")}


@pytest.fixture(scope="module")
def rules_to_steps():
    static, generated = {}, {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, step in rule_steps(smk):
            if name is None:
                # one block named in its body per rule file, its names starting with the file's
                assert smk.stem not in generated, f"{smk.name}: several rule blocks named in their body"
                generated[smk.stem] = step
            elif name != "all":
                static[name] = step
    # the names of the rules named in their body, as snakemake defines them in each stacking
    # mode, each calling the step of its block
    stacked = "finetune_stacking={'by': 'speaker'}", "evaluation={'by': 'speaker'}"
    names = listed_rules() | listed_rules("--config", *stacked)
    names -= {"all"} | set(static)
    blocks = {name: [step for stem, step in generated.items() if name.startswith(stem)] for name in names}
    assert all(len(steps) == 1 for steps in blocks.values()), f"rules of no single block: {blocks}"
    return static | {name: steps[0] for name, steps in blocks.items()}


def test_every_rule_calls_the_step_of_its_name(rules_to_steps):
    assert {"finetune_stacked", "finetune", "evaluate_stacked", "evaluate_finetuned"} <= set(rules_to_steps)
    wrong = {
        rule: step
        for rule, step in rules_to_steps.items()
        if step != RULE_STEP_EXCEPTIONS.get(rule, rule)
    }
    assert not wrong, f"rules calling a step of another name (rule: step): {wrong}"
    unused = sorted(set(STEPS) - set(rules_to_steps.values()))
    assert not unused, f"step modules that no rule calls: {unused}"


def test_sizes():
    too_long = {
        str(path.relative_to(REPO)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) >= LARGEST_MODULE_LINES
    }
    assert not too_long, f"modules of {LARGEST_MODULE_LINES} lines or more: {too_long}"
    assert len((REPO / "rules" / "common.smk").read_text().splitlines()) < COMMON_SMK_LINES
    assert len((REPO / "bench" / "RESULTS.md").read_text().splitlines()) < RESULTS_MD_LINES
