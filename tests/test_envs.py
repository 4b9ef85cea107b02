"""Conda environments: every rule names one that exists; every env file parses, is pinned,
agrees with pyproject.toml, and holds every package that its rules' steps import.

No conda channel is reachable here, so conda package names and versions are checked for form
only; the pip sections are checked against PyPI (skipped, saying so, where PyPI is unreachable).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
PYTHON = "3.11"
# conda-forge names of packages that PyPI names otherwise
CONDA_TO_PYPI = {"pysoundfile": "soundfile", "matplotlib-base": "matplotlib", "pytorch": "torch"}
# packages imported only through importlib (not seen by the import scan), by env
DYNAMIC_IMPORTS = {"tts-scoring": {"speechmos", "onnxruntime", "librosa"}}
# pins that follow a TTS package's own requirements where they clash with pyproject.toml's, by env:
# f5-tts 1.1.22 needs gradio, which needs huggingface-hub < 2; chatterbox-tts 0.1.7 pins torch 2.6,
# numpy < 2, transformers 5.2, safetensors 0.5.3 (and what those bring)
OWN_PINS = {
    "tts-f5": {"huggingface-hub"},
    "tts-chatterbox": {"numpy", "pandas", "torch", "torchaudio", "transformers", "tokenizers", "safetensors",
                       "huggingface-hub"},
}


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


@cache
def read_env(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_packages(path: Path) -> dict[str, tuple[str, str, str]]:
    """canonical name -> (where: conda|pip, the entry as written, version spec)."""
    packages = {}
    for entry in read_env(path)["dependencies"]:
        if isinstance(entry, dict):
            for line in entry["pip"]:
                requirement = Requirement(line)
                packages[canonicalize_name(requirement.name)] = ("pip", line, str(requirement.specifier))
        else:
            name, _, version = entry.partition("=")
            name = CONDA_TO_PYPI.get(name, name)
            packages[canonicalize_name(name)] = ("conda", entry, version)
    return packages


# ---- the rules -------------------------------------------------------------------


def rules() -> list[tuple[str, str, str]]:
    """(file, rule name, rule text) for every rule of rules/*.smk."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for body in re.split(r"\n(?=rule \w+:)", smk.read_text())[1:]:
            found.append((smk.name, body.split(":")[0].removeprefix("rule "), body.split("\n\n\n")[0]))
    return found


def conda_directive(body: str) -> str | None:
    match = re.search(r"^    conda:\n        (.+)$", body, re.M)
    return match.group(1).strip() if match else None


def tts_conda_envs() -> dict[str, str]:
    """backend -> the env its jobs run in, as the registry (workflow_scripts.tts.BACKENDS) declares it."""
    from workflow_scripts.tts import BACKENDS

    return {name: backend.conda_env for name, backend in BACKENDS.items()}


def rule_envs(body: str) -> list[str]:
    """The env names a rule can run in."""
    directive = conda_directive(body)
    if directive is None:
        return []
    if directive == "tts_conda_env":
        return sorted(set(tts_conda_envs().values()))
    path = ast.literal_eval(directive)
    assert path.startswith("../envs/") and path.endswith(".yaml"), path
    return [path.removeprefix("../envs/").removesuffix(".yaml")]


# ---- what a step imports ----------------------------------------------------------


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_packages(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level names of the third-party packages `module` imports, anywhere in its code,
    and through the workflow_scripts modules it imports."""
    seen = set() if seen is None else seen
    path = module_file(module)
    if module in seen or path is None:
        return set()
    seen.add(module)
    found = imported_packages(module.rsplit(".", 1)[0], seen) if "." in module else set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "workflow_scripts":
                found |= imported_packages(name, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


# import name -> distribution, for packages not installed where the tests run
KNOWN_DISTRIBUTIONS = {
    "TTS": "coqui-tts",
    "whisper": "openai-whisper",
    "yaml": "pyyaml",
    "pkg_resources": "setuptools",
}


@cache
def distribution_of(import_name: str) -> str:
    fallback = KNOWN_DISTRIBUTIONS.get(import_name, import_name)
    dists = metadata.packages_distributions().get(import_name, [fallback])
    return canonicalize_name(dists[0])


def rule_modules(body: str) -> list[str]:
    return sorted(set(re.findall(r"python -m (workflow_scripts\.\w+)", body)))


# ---- tests ------------------------------------------------------------------------


def test_every_env_file_parses_and_is_pinned():
    assert {p.stem for p in env_files()} >= {"pse-torch", "tts-offline", "tts-coqui", "tts-hf", "tts-scoring"}
    for path in env_files():
        env = read_env(path)
        assert set(env) == {"channels", "dependencies"}, f"{path.name}: keys {sorted(env)}"
        assert env["channels"] == ["conda-forge", "nodefaults"], path.name
        for where, entry, spec in env_packages(path).values():
            if where == "conda":
                assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*=[0-9][0-9a-z.]*", entry), f"{path.name}: {entry!r}"
            else:
                assert re.fullmatch(r"==[0-9][0-9a-z.]*", spec), f"{path.name}: pip {entry!r} is not pinned"
        packages = env_packages(path)
        assert packages["python"][2] == PYTHON, f"{path.name}: python={PYTHON}"
        pip_sections = [e for e in env["dependencies"] if isinstance(e, dict)]
        assert len(pip_sections) <= 1 and (not pip_sections or "pip" in packages), path.name


def test_every_rule_has_a_conda_env_that_exists():
    found = rules()
    assert len(found) >= 10
    for smk, name, body in found:
        envs = rule_envs(body)
        assert envs, f"rules/{smk}: rule {name} has no conda: directive"
        for env in envs:
            assert (ENVS / f"{env}.yaml").is_file(), f"rules/{smk}: rule {name}: envs/{env}.yaml not found"


def test_every_tts_backend_has_an_env():
    for backend, env in tts_conda_envs().items():
        assert (ENVS / f"{env}.yaml").is_file(), f"TTS backend {backend}: envs/{env}.yaml not found"


def test_every_env_holds_what_its_steps_import():
    """The packages that a rule's step imports (directly or through workflow_scripts) are in its env;
    for the TTS rules, each env also holds what its backends import."""
    needs: dict[str, dict[str, set[str]]] = {}  # env -> package -> who imports it
    backends_by_env: dict[str, list[str]] = {}
    from workflow_scripts.tts import BACKENDS

    for backend in BACKENDS.values():
        backends_by_env.setdefault(backend.conda_env, []).append(backend.target.split(":")[0])
    for smk, name, body in rules():
        for env in rule_envs(body):
            modules = rule_modules(body)
            if conda_directive(body) == "tts_conda_env":
                modules += backends_by_env.get(env, [])
            for module in modules:
                for package in imported_packages(module):
                    needs.setdefault(env, {}).setdefault(distribution_of(package), set()).add(
                        f"{name} ({module})"
                    )
    problems = []
    for env, packages in sorted(needs.items()):
        listed = set(env_packages(ENVS / f"{env}.yaml"))
        for package, users in sorted(packages.items()):
            if package not in listed:
                problems.append(f"envs/{env}.yaml lacks {package}, imported by {', '.join(sorted(users))}")
        for package in DYNAMIC_IMPORTS.get(env, ()):
            if package not in listed:
                problems.append(f"envs/{env}.yaml lacks {package}")
    assert not problems, "\n".join(problems)


def test_versions_agree_with_pyproject_and_this_environment():
    """A pin matches pyproject.toml where it names the package, else the version installed here
    (the one the tests run with)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {canonicalize_name(r.name): r.specifier for r in map(Requirement, project)}
    problems = []
    for path in env_files():
        for name, (_, entry, spec) in env_packages(path).items():
            version = spec.removeprefix("==")
            if name in ("python", "pip") or name in OWN_PINS.get(path.stem, ()):
                continue
            if name in wanted and wanted[name] and not wanted[name].contains(version, prereleases=True):
                problems.append(f"{path.name}: {entry} but pyproject.toml has {name}{wanted[name]}")
                continue
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
            if name not in wanted and installed != version:
                problems.append(f"{path.name}: {entry} but {installed} is installed here")
    assert not problems, "\n".join(problems)


# ---- PyPI -------------------------------------------------------------------------


def pypi_project(name: str) -> dict:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=15) as response:
        return json.load(response)


def installable_here(files: list[dict]) -> bool:
    """A file of the release that pip could install on CPython 3.11, Linux x86_64."""
    supported = {str(tag) for tag in sys_tags()} | {"py3-none-any", "py2.py3-none-any"}
    for file in files:
        if file.get("yanked"):
            continue
        requires_python = file.get("requires_python")
        if requires_python and not SpecifierSet(requires_python).contains(PYTHON + ".0"):
            continue
        if file["packagetype"] == "sdist":
            return True
        if file["filename"].endswith(".whl"):
            _, _, _, tags = parse_wheel_filename(file["filename"])
            if any(
                str(tag) in supported
                or tag.platform.startswith(("manylinux", "linux_x86_64"))
                and tag.interpreter in ("cp311", "py3")
                and tag.abi in ("cp311", "abi3", "none")
                for tag in tags
            ):
                return True
    return False


@pytest.fixture(scope="module")
def pypi_reachable():
    try:
        pypi_project("pip")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        pytest.skip(f"PyPI unreachable ({exc}): pip sections not checked against the registry")


def test_pip_sections_exist_on_pypi(pypi_reachable):
    pins = {}
    for path in env_files():
        for name, (where, entry, spec) in env_packages(path).items():
            if where == "pip":
                pins.setdefault((name, spec.removeprefix("==")), []).append(path.name)

    def check(pin):
        name, version = pin
        try:
            releases = pypi_project(name)["releases"]
        except urllib.error.HTTPError as exc:
            return f"{name}: not on PyPI ({exc.code})"
        if version not in releases:
            return f"{name}=={version}: no such release on PyPI"
        if not installable_here(releases[version]):
            return f"{name}=={version}: no file installable on CPython {PYTHON} Linux x86_64"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = [f"{p} ({', '.join(pins[pin])})" for pin, p in zip(pins, pool.map(check, pins)) if p]
    assert not problems, "\n".join(problems)
