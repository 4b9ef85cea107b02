"""F5-TTS and Chatterbox through the workflow's rules, on tiny random checkpoints of their real
architectures: download_models (local entries), clone_voice (the F5-TTS license guard, the
enrollment transcript from the sheet or from the ASR), synthesize and score_tts; and the
paper grid with both systems added (configs/genda2025_modern.yaml)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from test_workflow import GENDA2025_JOBS, REPO, load_config, make_workdir, planned_jobs, snakemake

pytest.importorskip("f5_tts", reason="f5-tts is installed with --no-deps (Makefile)")
pytest.importorskip("chatterbox", reason="chatterbox-tts is installed with --no-deps (Makefile)")

from workflow_scripts.testing.tiny_chatterbox import build_chatterbox  # noqa: E402
from workflow_scripts.testing.tiny_f5tts import build_f5tts, build_vocos  # noqa: E402
from workflow_scripts.testing.tiny_models import build_tiny_xvector  # noqa: E402

SYSTEMS = ["f5tts", "chatterbox"]
CIB_TEXT = "My voice is the voice of the second speaker."
SHEET = f"speaker\tseed\tenrollment_text\nciA\t11\t\nciB\t12\t{CIB_TEXT}\n"


def merged(*names: str) -> dict:
    """The config files read in order, each merged into the ones before (snakemake's --configfile a b)."""
    from snakemake.utils import update_config

    config = {}
    for name in names:
        update_config(config, copy.deepcopy(load_config(name)))
    return config


# what a TTS job imports; the Snakefile, parsed by every snakemake call, must not (perth, for one,
# warns on import)
HEAVY_MODULES = {"torch", "torchaudio", "f5_tts", "chatterbox", "perth", "s3tokenizer", "vocos", "librosa",
                 "transformers", "TTS"}


def imported_modules(importtime: str) -> set[str]:
    """The top-level packages named in a `python -X importtime` report."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in importtime.splitlines() if line.startswith("import time:") and line.count("|") == 2}


def test_the_modern_config_adds_both_systems_to_the_paper_grid(tmp_path, monkeypatch):
    config = merged("configs/genda2025.yaml", "configs/genda2025_modern.yaml")
    config["accept_licenses"] = ["f5tts_cc_by_nc"]
    workdir = make_workdir(tmp_path, config, (REPO / "configs" / "genda2025_speakers.tsv").read_text())
    counts = pd.Series([rule for rule, _ in planned_jobs(workdir)]).value_counts().to_dict()
    # 2 systems x 20 speakers (x 2 sizes); their fine-tunes and evaluations join each speaker's
    # stacks (no job added)
    added = {"download_models": 2, "clone_voice": 40, "synthesize": 40, "score_tts": 40, "score_tts_cpu": 40}
    assert counts == {rule: count + added.get(rule, 0) for rule, count in GENDA2025_JOBS.items()}
    commands = snakemake(workdir, "-n", "--printshellcmds", "results/voices/f5tts/F0.pt",
                         "results/voices/chatterbox/F0.pt", "results/voices/xtts/F0.pt").stdout
    f5_command = next(line for line in commands.splitlines() if "clone_voice --backend f5tts" in line)
    assert "F5TTS_CC_BY_NC_ACCEPTED=1 python -m workflow_scripts.clone_voice" in f5_command
    assert "--asr whisper --whisper-model large-v3" in f5_command  # no transcript in the sheet: Whisper's
    cb_command = next(line for line in commands.splitlines() if "clone_voice --backend chatterbox" in line)
    assert "--asr" not in cb_command and "ACCEPTED" not in cb_command
    xtts_command = next(line for line in commands.splitlines() if "clone_voice --backend xtts" in line)
    assert "COQUI_TOS_AGREED" not in xtts_command  # accept_coqui_license: false, coqui_cpml not accepted

    # coqui_cpml in accept_licenses accepts XTTS-v2's license as accept_coqui_license does; parsing
    # the Snakefile and planning the jobs imports none of the backends' packages
    config["accept_licenses"] = ["coqui_cpml"]
    workdir = make_workdir(tmp_path, config, (REPO / "configs" / "genda2025_speakers.tsv").read_text())
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    dry_run = snakemake(workdir, "-n", "--printshellcmds", "results/voices/f5tts/F0.pt",
                        "results/voices/xtts/F0.pt")
    lines = dry_run.stdout.splitlines()
    assert "COQUI_TOS_AGREED=1 python" in next(line for line in lines if "clone_voice --backend xtts" in line)
    assert "ACCEPTED" not in next(line for line in lines if "clone_voice --backend f5tts" in line)
    imported = imported_modules(dry_run.stderr)
    assert "workflow_scripts" in imported and not imported & HEAVY_MODULES, imported & HEAVY_MODULES


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("modern_hub")
    return {"f5tts": build_f5tts(root / "F5TTS_v1_Base"), "vocos": build_vocos(root / "vocos"),
            "chatterbox": build_chatterbox(root / "chatterbox"), "xvector": build_tiny_xvector(root / "xvector")}


def tts_config(hub: dict, tmp_path, accept: bool) -> dict:
    config = load_config("tests/config/ci.yaml")
    config["sources"] = SYSTEMS
    config["tts"] = {
        "f5tts": {"backend": "f5tts", "seed": 0, "batch_size": 4,
                  "options": {"model": hub["f5tts"], "vocoder": hub["vocos"], "nfe_step": 4, "max_batch": 4}},
        "chatterbox": {"backend": "chatterbox", "seed": 0,
                       "options": {"model": hub["chatterbox"], "max_new_tokens": 30}},
    }
    config["tts_scoring"] = dict(config["tts_scoring"], asr="pocketsphinx", mos=["dnsmos"], max_utterances=3,
                                 secs_xvector_model=hub["xvector"])
    config["model_dir"] = str(tmp_path / "models")
    config["download_models"] = True
    config["accept_licenses"] = ["f5tts_cc_by_nc"] if accept else []
    return config


@pytest.mark.slow
def test_f5tts_and_chatterbox_through_the_rules(hub, tmp_path):
    # Without the license accepted, the F5-TTS job stops at once and says which license and key.
    workdir = make_workdir(tmp_path, tts_config(hub, tmp_path, accept=False), SHEET)
    result = snakemake(workdir, "--cores", "2", "results/voices/f5tts/ciB.pt", check=False)
    assert result.returncode != 0
    log = (workdir / "logs/clone_voice/f5tts/ciB.log").read_text()
    assert "CC BY-NC 4.0" in log and "accept_licenses: [f5tts_cc_by_nc]" in log
    assert not (workdir / "results/voices/f5tts/ciB.pt").exists()

    workdir = make_workdir(tmp_path, tts_config(hub, tmp_path, accept=True), SHEET)
    targets = [f"results/tts_scores/{tts}/{spk}.json" for tts in SYSTEMS for spk in ("ciA", "ciB")]
    snakemake(workdir, "--cores", "2", *targets)

    manifest = json.loads((tmp_path / "models/manifests/f5tts.json").read_text())
    assert {m["name"] for m in manifest["models"]} == {hub["f5tts"], hub["vocos"]}  # pocketsphinx: no weights
    # the transcript: the ASR's for ciA (named in the voice file), the sheet's for ciB
    voices = {spk: torch.load(workdir / f"results/voices/f5tts/{spk}.pt", weights_only=False)["conditioning"]
              for spk in ("ciA", "ciB")}
    assert voices["ciA"]["reference_text_source"] == "pocketsphinx-en-us" and voices["ciA"]["reference_text"].strip()
    assert voices["ciB"]["reference_text_source"] == "speaker sheet (enrollment_text)"
    assert voices["ciB"]["reference_text"] == CIB_TEXT + " "
    for tts in SYSTEMS:
        for spk in ("ciA", "ciB"):
            speech = workdir / f"results/speech/{tts}/{spk}"
            table = pd.read_csv(speech / "manifest.csv")
            assert len(table) == 8  # the largest data size of ci.yaml: 6 train + 2 val
            for wav in table.path:
                audio, rate = sf.read(speech / wav, dtype="float32")
                assert rate == 16000 and audio.ndim == 1 and audio.size > 0 and np.all(np.isfinite(audio))
            summary = json.loads((workdir / f"results/tts_scores/{tts}/{spk}.json").read_text())
            assert summary["n_utterances"] == 3 and summary["asr"].startswith("pocketsphinx")

    # The conditioning is computed once and reused; a new transcript in the sheet reclones that voice only.
    voice_mtime = (workdir / "results/voices/f5tts/ciA.pt").stat().st_mtime_ns
    rerun = snakemake(workdir, "--cores", "2", *targets)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    assert (workdir / "results/voices/f5tts/ciA.pt").stat().st_mtime_ns == voice_mtime
    (workdir / "speakers.tsv").write_text(SHEET.replace(CIB_TEXT, "Another transcript of the clip."))
    planned = [(rule, output) for rule, output in planned_jobs(workdir) if rule == "clone_voice"]
    assert planned == [("clone_voice", "results/voices/f5tts/ciB.pt")]
