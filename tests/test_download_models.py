"""download_models: the model list, local entries, the manifest, and a clear failure without network."""

import hashlib
import json

import pytest

from workflow_scripts import download_models
from workflow_scripts.testing.tiny_models import build_speecht5_hifigan, build_tiny_xvector


@pytest.fixture
def offline(monkeypatch):
    """Hub clients in offline mode, so that a fetch fails at once whatever the network does."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_entries_are_recorded_in_the_manifest(tmp_path):
    xvector_dir = tmp_path / "spkrec"
    build_tiny_xvector(xvector_dir)
    vocoder_dir = build_speecht5_hifigan(tmp_path / "hifigan")
    whisper_pt = tmp_path / "tiny-random.pt"
    whisper_pt.write_bytes(b"not really a checkpoint, only recorded")
    models_yaml = tmp_path / "models.yaml"
    models_yaml.write_text(
        f"speechbrain: [{xvector_dir}]\nhuggingface: [{vocoder_dir}]\nwhisper: {whisper_pt}\n")
    model_dir = tmp_path / "models"
    assert download_models.main(["--model-dir", str(model_dir), "--models", str(models_yaml)]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    records = {record["kind"]: record for record in manifest["models"]}
    assert set(records) == {"speechbrain", "huggingface", "whisper"}
    assert all(record["source"] == "local" for record in records.values())
    files = {f["file"]: f for f in records["speechbrain"]["files"]}
    assert set(files) == {"embedding_model.ckpt", "mean_var_norm_emb.ckpt", "classifier.ckpt",
                          "label_encoder.ckpt"}
    assert files["embedding_model.ckpt"]["sha256"] == sha256(xvector_dir / "embedding_model.ckpt")
    assert [f["file"] for f in records["huggingface"]["files"]] == ["model.safetensors"]
    assert records["whisper"]["files"] == [{"file": "tiny-random.pt", "bytes": whisper_pt.stat().st_size,
                                            "sha256": sha256(whisper_pt)}]
    assert not list(model_dir.glob(".*tmp*"))  # written atomically


def test_json_list_form_is_accepted(tmp_path):
    vocoder_dir = build_speecht5_hifigan(tmp_path / "hifigan")
    models_json = tmp_path / "models.json"
    models_json.write_text(json.dumps([{"kind": "huggingface", "name": vocoder_dir}]))
    manifest = tmp_path / "out" / "manifest.json"
    download_models.main(["--model-dir", str(tmp_path / "models"), "--models", str(models_json),
                          "--manifest", str(manifest)])
    assert json.loads(manifest.read_text())["models"][0]["path"] == vocoder_dir


def test_without_network_fails_naming_each_model_and_writes_no_manifest(tmp_path, offline):
    models_yaml = tmp_path / "models.yaml"
    models_yaml.write_text("huggingface: [microsoft/speecht5_hifigan]\n"
                           "speechbrain: [speechbrain/spkrec-xvect-voxceleb]\n")
    model_dir = tmp_path / "models"
    with pytest.raises(RuntimeError) as error:
        download_models.main(["--model-dir", str(model_dir), "--models", str(models_yaml),
                              "--timeout-s", "5"])
    message = str(error.value)
    assert "could not fetch huggingface model 'microsoft/speecht5_hifigan'" in message
    assert "speechbrain model 'speechbrain/spkrec-xvect-voxceleb'" in message
    assert not (model_dir / "manifest.json").exists()


@pytest.mark.parametrize("content, problem", [
    ("voices: [a/b]\n", "unknown kind 'voices'"),
    ("whisper: [huge-v9]\n", "not a Whisper size|nor a Whisper size"),
    ("coqui: [xtts]\n", "coqui model name"),
    ("huggingface: [speecht5]\n", "hub id"),
    ("[1, 2]\n", "exactly the keys kind and name"),
    ("{}\n", "lists no model"),
])
def test_bad_model_list_is_refused_before_any_download(tmp_path, content, problem):
    models_yaml = tmp_path / "models.yaml"
    models_yaml.write_text(content)
    with pytest.raises(ValueError, match=problem):
        download_models.main(["--model-dir", str(tmp_path / "models"), "--models", str(models_yaml)])
    assert not (tmp_path / "models" / "manifest.json").exists()


def test_missing_model_list_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.yaml: model list not found"):
        download_models.main(["--model-dir", str(tmp_path), "--models", str(tmp_path / "nothing.yaml")])
