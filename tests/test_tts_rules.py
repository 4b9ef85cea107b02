"""The real TTS backends and scorers through the workflow's own rules, on tiny random checkpoints.

The checkpoints have the real architectures (coqui Vits/YourTTS and Xtts,
transformers SpeechT5 + HiFi-GAN, a speechbrain x-vector, Whisper) and are
loaded from local folders by the same code that loads the hub weights; the
rules run them through Snakemake: download_models (local entries),
clone_voice, synthesize, score_tts.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_workflow import load_config, make_workdir, snakemake

from workflow_scripts.testing.tiny_models import (
    build_speecht5_hifigan,
    build_speecht5_tts,
    build_tiny_whisper,
    build_tiny_xvector,
    build_xtts,
    build_yourtts,
)

SYSTEMS = ["speecht5", "yourtts", "xtts"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Tiny random models in local folders, standing in for the hub."""
    root = tmp_path_factory.mktemp("hub")
    return {
        "xvector": build_tiny_xvector(root / "xvector"),
        "speecht5_tts": build_speecht5_tts(root / "speecht5_tts"),
        "speecht5_hifigan": build_speecht5_hifigan(root / "speecht5_hifigan"),
        "xtts": str(build_xtts(root / "xtts")),
        "yourtts": str(build_yourtts(root / "yourtts")),
        "whisper": str(build_tiny_whisper(root / "whisper")),
    }


def tts_config(hub: dict, tmp_path, accept_license: bool) -> dict:
    config = load_config("tests/config/ci.yaml")
    config["sources"] = SYSTEMS
    config["tts"] = {
        "speecht5": {"backend": "speecht5", "seed": 0, "batch_size": 4,
                     "options": {"model": hub["speecht5_tts"], "vocoder": hub["speecht5_hifigan"],
                                 "speaker_encoder": hub["xvector"], "threshold": 3.0, "maxlenratio": 3.0}},
        "yourtts": {"backend": "yourtts", "seed": 0, "options": {"model": hub["yourtts"]}},
        "xtts": {"backend": "xtts", "seed": 0, "options": {"model": hub["xtts"]}},
    }
    config["tts_scoring"] = {"asr": "whisper", "whisper_model": hub["whisper"],
                             "secs_xvector_model": hub["xvector"], "mos": ["dnsmos"],
                             "max_utterances": 3, "cpu_job": True}
    config["model_dir"] = str(tmp_path / "models")
    config["download_models"] = True
    config["accept_coqui_license"] = accept_license
    return config


@pytest.mark.slow
def test_backends_and_scoring_through_the_rules(hub, tmp_path):
    sheet = "speaker\tseed\nciA\t1\n"
    workdir = make_workdir(tmp_path, tts_config(hub, tmp_path, accept_license=False), sheet)

    # Without the license accepted, the XTTS job stops at once and says what to set.
    result = snakemake(workdir, "--cores", "2", "results/voices/xtts/ciA.pt", check=False)
    assert result.returncode != 0
    log = (workdir / "logs/clone_voice/xtts/ciA.log").read_text()
    assert "accept_coqui_license: true" in log and "CPML" in log
    assert not (workdir / "results/voices/xtts/ciA.pt").exists()

    workdir = make_workdir(tmp_path, tts_config(hub, tmp_path, accept_license=True), sheet)
    targets = [f"results/tts_scores/{tts}/ciA.json" for tts in SYSTEMS]
    snakemake(workdir, "--cores", "2", *targets)

    # The model manifests list the local folders the jobs loaded.
    manifest = json.loads((tmp_path / "models/manifests/speecht5.json").read_text())
    assert {m["name"] for m in manifest["models"]} == {hub["speecht5_tts"], hub["speecht5_hifigan"],
                                                        hub["xvector"]}
    for tts in SYSTEMS:
        voice_log = (workdir / f"logs/clone_voice/{tts}/ciA.log").read_text()
        assert "estimated conditioning" in voice_log
        speech = workdir / f"results/speech/{tts}/ciA"
        manifest = pd.read_csv(speech / "manifest.csv")
        assert len(manifest) == 8  # the largest data size of ci.yaml: 6 train + 2 val
        for wav in manifest.path:
            info = sf.info(speech / wav)
            assert info.samplerate == 16000 and info.channels == 1 and info.frames > 0
        summary = json.loads((workdir / f"results/tts_scores/{tts}/ciA.json").read_text())
        assert summary["n_utterances"] == 3
        assert summary["asr"].startswith("whisper"), summary["asr"]
        assert summary["wer"] is not None and summary["wer"] >= 0
        assert -1.0 <= summary["secs_xvector_mean"] <= 1.0
        assert summary["utmos_reason"]  # no UTMOS weights here: said, not invented
        assert summary["dnsmos_ovrl_mean"] is not None
        # cpu_job: Resemblyzer SECS and DNSMOS came from the folder's score_tts_cpu job
        cpu_scores = json.loads((workdir / f"results/tts_scores/{tts}/ciA.cpu.json").read_text())
        assert len(cpu_scores["utterances"]) == 3 and list(cpu_scores["models"]) == ["dnsmos"]
        assert summary["secs_resemblyzer_mean"] == pytest.approx(np.mean(cpu_scores["scores"]["secs_resemblyzer"]))
        assert "read from results/tts_scores" in (workdir / f"logs/score_tts/{tts}/ciA.log").read_text()

    # A rerun has nothing to do: the conditioning is computed once and reused.
    rerun = snakemake(workdir, "--cores", "2", *targets)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
