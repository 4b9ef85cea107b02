"""Fetch every model the workflow needs into the model folder, for nodes without internet.

    python -m workflow_scripts.download_models --model-dir models --models models.yaml

`--models` is a YAML or JSON file naming what to fetch, by kind:

    huggingface: [microsoft/speecht5_tts, microsoft/speecht5_hifigan]
    speechbrain: [speechbrain/spkrec-xvect-voxceleb]
    coqui: [tts_models/multilingual/multi-dataset/your_tts]
    whisper: [large-v3]
    f5tts: [F5TTS_v1_Base]
    chatterbox: [ResembleAI/chatterbox]

(or a list of `{kind: ..., name: ...}`). Each model goes where the steps look
for it under `--model-dir` (workflow_scripts.runtime.model_cache): Hugging Face repos
into `huggingface/hub` (snapshot_download), speechbrain models into their
savedir under `speechbrain/` (from_hparams), coqui models through coqui's
ModelManager into `coqui/` (TTS_HOME; coqui fetches the ones it hosts on the
Hugging Face hub into `huggingface/`), Whisper checkpoints into `whisper/`,
and the released F5-TTS and Chatterbox checkpoints file by file (the files
their loaders read, `workflow_scripts.tts.HUB_FILES`; their repositories hold
other models too) into `huggingface/hub`.
A name that is an existing local folder or file is not fetched, only
recorded. When every entry is in place, `manifest.json` is written
atomically into the model folder: kind, name, path and the size and sha256
of each weight file. If a model cannot be fetched (no network, unknown name)
the step fails naming it, and writes no manifest.

What the workflow fetches: for each TTS system, the models its backend
declares in `workflow_scripts.tts.BACKENDS` (with the names its options give,
else the backend's defaults; XTTS-v2's are under the CPML:
`--accept-coqui-license`; the F5-TTS weights are under CC BY-NC 4.0, which the
synthesis jobs check); for score_tts, the models of `tts_scoring` in the
config (the Whisper size, the speechbrain x-vector model, the UTMOS weights);
for a backend conditioned on the enrollment clip's transcript, the Whisper
model of `tts_scoring` too, when it transcribes.
`world_clone` and `flite` need no model; Resemblyzer (SECS), DNSMOS and
DistillMOS ship their weights in their packages.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import sys
from pathlib import Path

import yaml

from workflow_scripts.runtime import model_cache
from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.tts import HUB_FILES

log = logging.getLogger("download_models")

KINDS = ("huggingface", "speechbrain", "coqui", "whisper", "f5tts", "chatterbox")
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".tar", ".model", ".pkl", ".onnx", ".npz"}
MANIFEST_NAME = "manifest.json"


def read_model_list(models_file: Path) -> list[dict]:
    """[{kind, name}] from a YAML/JSON file: a mapping kind -> names, or a list of {kind, name}; checked."""
    if not models_file.is_file():
        raise FileNotFoundError(f"{models_file}: model list not found")
    return parse_model_list(models_file.read_text(encoding="utf-8"), str(models_file))


def parse_model_list(text: str, models_file: str = "--models-json") -> list[dict]:
    """[{kind, name}] from YAML/JSON text (`models_file` names its origin in errors); checked."""
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ValueError(f"{models_file}: not valid YAML or JSON ({exc})") from exc
    if isinstance(data, dict):
        entries = []
        for kind, names in data.items():
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list):
                raise ValueError(f"{models_file}: {kind}: expected a list of model names, got {names!r}")
            entries.extend({"kind": kind, "name": name} for name in names)
    elif isinstance(data, list):
        entries = data
    else:
        raise ValueError(f"{models_file}: expected a mapping kind -> model names, or a list of "
                         f"{{kind, name}}, got {type(data).__name__}")
    checked = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or set(entry) != {"kind", "name"}:
            raise ValueError(f"{models_file}: entry {number} must have exactly the keys kind and name, "
                             f"got {entry!r}")
        kind, name = entry["kind"], entry["name"]
        if kind not in KINDS:
            raise ValueError(f"{models_file}: entry {number}: unknown kind {kind!r}; "
                             f"known: {', '.join(KINDS)}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{models_file}: entry {number} ({kind}): the name must be a non-empty string")
        checked.append({"kind": kind, "name": name.strip()})
    if not checked:
        raise ValueError(f"{models_file}: lists no model")
    return checked


def check_names(entries: list[dict]) -> None:
    """Refuse names that cannot be fetched, before anything is downloaded."""
    for entry in entries:
        kind, name = entry["kind"], entry["name"]
        if model_cache.is_local(name):
            continue
        if kind == "whisper":
            import whisper

            if name not in whisper._MODELS:
                raise ValueError(f"whisper model {name!r} is neither a local file nor a Whisper size "
                                 f"({', '.join(whisper._MODELS)})")
        elif kind == "coqui" and (len(name.split("/")) != 4 or not all(name.split("/"))):
            raise ValueError(f"coqui model {name!r} is neither a local folder nor a coqui model name "
                             "(<type>/<language>/<dataset>/<model>)")
        elif kind in ("huggingface", "speechbrain") and len(name.split("/")) != 2:
            raise ValueError(f"{kind} model {name!r} is neither a local folder nor a hub id (<owner>/<name>)")
        elif kind in HUB_FILES and name not in HUB_FILES[kind]:
            raise ValueError(f"{kind} model {name!r} is neither a local folder nor a released model "
                             f"({', '.join(HUB_FILES[kind])})")


def fetch_huggingface(name: str, model_dir: Path, timeout_s: float) -> Path:
    from huggingface_hub import snapshot_download

    cache_dir = model_cache.cache_dirs(model_dir)["huggingface"] / "hub"
    return Path(snapshot_download(repo_id=name, cache_dir=str(cache_dir), etag_timeout=timeout_s))


def fetch_speechbrain(name: str, model_dir: Path, timeout_s: float) -> Path:
    from workflow_scripts.scoring.xvector import load_classifier

    load_classifier(name, model_dir, device="cpu", download_only=True)
    return model_cache.speechbrain_savedir(model_dir, name)


def fetch_coqui(name: str, model_dir: Path, timeout_s: float) -> Path:
    from TTS.utils.manage import ModelManager

    manager = ModelManager(output_prefix=model_cache.cache_dirs(model_dir)["coqui"], progress_bar=False)
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO("")  # a license question fails at once instead of waiting
    try:
        model_path, config_path, _ = manager.download_model(name)
    except EOFError as exc:
        raise RuntimeError(f"coqui model {name!r} needs its license accepted: rerun with "
                           "--accept-coqui-license (sets COQUI_TOS_AGREED=1)") from exc
    finally:
        sys.stdin = saved_stdin
    return Path(config_path).parent if config_path else Path(model_path)


def fetch_whisper(name: str, model_dir: Path, timeout_s: float) -> Path:
    import whisper

    root = model_cache.cache_dirs(model_dir)["whisper"]
    root.mkdir(parents=True, exist_ok=True)
    return Path(whisper._download(whisper._MODELS[name], str(root), False))


def fetch_hub_files(kind: str):
    """The fetcher of a kind whose released models are some files of a hub repository."""

    def fetch(name: str, model_dir: Path, timeout_s: float) -> Path:
        from huggingface_hub import hf_hub_download

        repo, filenames = HUB_FILES[kind][name]
        cache_dir = model_cache.cache_dirs(model_dir)["huggingface"] / "hub"
        paths = [Path(hf_hub_download(repo, filename, cache_dir=str(cache_dir), etag_timeout=timeout_s))
                 for filename in filenames]
        return paths[0].parents[len(Path(filenames[0]).parts) - 1]  # the snapshot folder

    return fetch


FETCHERS = {"huggingface": fetch_huggingface, "speechbrain": fetch_speechbrain,
            "coqui": fetch_coqui, "whisper": fetch_whisper,
            "f5tts": fetch_hub_files("f5tts"), "chatterbox": fetch_hub_files("chatterbox")}


def weight_files(path: Path) -> list[dict]:
    """Size and sha256 of the weight files at `path` (a file, or every weight file under a folder)."""
    path = Path(path)
    if path.is_file():
        candidates = [path]
    else:
        candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    base = path.parent if path.is_file() else path
    return [{"file": str(p.relative_to(base)), "bytes": p.stat().st_size, "sha256": model_cache.file_sha256(p)}
            for p in candidates]


def download_models(entries: list[dict], model_dir: Path, manifest: Path | None = None,
                    timeout_s: float = 10.0) -> list[dict]:
    """Fetch (or find) every entry, then write the manifest; fails naming every model not fetched."""
    check_names(entries)
    records, failures = [], []
    for entry in entries:
        kind, name = entry["kind"], entry["name"]
        if model_cache.is_local(name):
            path = Path(name).expanduser().resolve()
            log.info("%s %s: local, not fetched", kind, path)
            source = "local"
        else:
            log.info("%s %s: fetching", kind, name)
            try:
                path = FETCHERS[kind](name, model_dir, timeout_s)
            except Exception as exc:
                lines = str(exc).strip().splitlines()
                reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
                log.error("%s %s: not fetched (%s)", kind, name, reason)
                failures.append(f"{kind} model {name!r} ({reason})")
                continue
            source = "fetched"
        records.append({"kind": kind, "name": name, "source": source, "path": str(path),
                        "files": weight_files(path)})
        log.info("%s %s: in %s", kind, name, path)
    if failures:
        raise RuntimeError("could not fetch " + "; ".join(failures) +
                           ". Run this step where the hub is reachable, or name local folders instead")
    manifest = manifest or Path(model_dir) / MANIFEST_NAME
    atomic_write_text(manifest, json.dumps({"model_dir": str(Path(model_dir).resolve()), "models": records},
                                           indent=2) + "\n")
    log.info("wrote %s: %d models", manifest, len(records))
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="the model folder to fill")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", type=Path,
                      help="YAML/JSON file: kind (" + ", ".join(KINDS) + ") -> names")
    what.add_argument("--models-json", help="the same as JSON text (the workflow passes it this way)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help=f"where to write the manifest (default: <model-dir>/{MANIFEST_NAME})")
    parser.add_argument("--accept-coqui-license", action="store_true",
                        help="accept the license of coqui models that ask for it (sets COQUI_TOS_AGREED=1)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="network timeout per request (s)")
    args = parser.parse_args(argv)
    setup_logging()
    entries = read_model_list(args.models) if args.models else parse_model_list(args.models_json)
    model_cache.configure(args.model_dir)  # before any model library is imported
    if args.accept_coqui_license:
        os.environ["COQUI_TOS_AGREED"] = "1"
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(args.timeout_s)  # urllib downloads (whisper, coqui) get no timeout of their own
    try:
        download_models(entries, args.model_dir, args.manifest, args.timeout_s)
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
