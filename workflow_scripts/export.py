"""The GenDA 2025 challenge's submission folders.

    task1: a speaker's 50 given sentences as synthesized by one TTS system: the first 50
           utterances of its speech folder (their texts are checked against the first 50
           lines of the speaker's sentences.txt) -> {speaker}_task1_00..49.wav
    task2: the speaker's challenge test mixtures enhanced by one model
           -> {speaker}_task2_00..44.wav, mixture NN -> output NN
    zip:   speaker folders -> one zip with a folder per speaker, as the challenge asks

    python -m workflow_scripts.export task1 --speaker F0 --speech-dir results/speech/xtts/F0 \
        --sentences data/speakers/F0/sentences.txt --out-dir results/export/team_task1/F0
    python -m workflow_scripts.export task2 --speaker F0 --model results/finetune/.../model.pt \
        --test-dir data/speakers/F0/challenge_test --out-dir results/export/team_task2/F0
    python -m workflow_scripts.export zip --folders results/export/team_task2/* \
        --out results/export/team_task2.zip

Audio is written as 16 kHz mono float32 WAV, the workflow's format.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from pathlib import Path

import torch
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_dir, atomic_path, read_audio, write_audio
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.files.corpora import text_key
from workflow_scripts.files.folders import read_test_folder
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.files.speaker_data import read_sentence_file
from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.model.enhance import enhance
from workflow_scripts.training.trainer import resolve_device

log = logging.getLogger("export")


def export_task1(args) -> int:
    manifest = read_speech_folder(args.speech_dir)
    sentences = read_sentence_file(args.sentences)
    count = args.num_utterances
    if len(manifest) < count or len(sentences) < count:
        raise ValueError(
            f"{args.speech_dir}: Track 1 needs the first {count} sentences: the speech folder has"
            f" {len(manifest)} utterances and {args.sentences} has {len(sentences)} lines"
        )
    rows = manifest.iloc[:count]
    for index, (text, sentence) in enumerate(zip(rows.text, sentences)):
        if text_key(str(text)) != text_key(sentence):
            raise ValueError(
                f"{args.speech_dir}/manifest.csv: row {index + 1} reads {text!r}, but line {index + 1} of"
                f" {args.sentences} is {sentence!r}"
            )
    with atomic_dir(args.out_dir) as tmp:
        for index, wav in enumerate(tqdm(rows.wav, desc=f"{args.speaker} task1", mininterval=5.0)):
            write_audio(tmp / f"{args.speaker}_task1_{index:02d}.wav", read_audio(wav))
    return count


def export_task2(args) -> int:
    table = read_test_folder(args.test_dir)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, _ = load_checkpoint(args.model)
    model.to(device)
    with atomic_dir(args.out_dir) as tmp:
        for index, wav in enumerate(tqdm(table.mixture_wav, desc=f"{args.speaker} task2", mininterval=5.0)):
            write_audio(tmp / f"{args.speaker}_task2_{index:02d}.wav", enhance(model, read_audio(wav), device))
    return len(table)


def export_zip(args) -> int:
    files = []
    for folder in args.folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: export folder not found")
        files += [(path, f"{folder.name}/{path.name}") for path in sorted(folder.glob("*.wav"))]
    with atomic_path(args.out, ".tmp.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
    return len(files)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True)
    task1 = tasks.add_parser("task1", help="Track 1: synthesized speech of the given sentences")
    task1.add_argument("--speaker", required=True)
    task1.add_argument("--speech-dir", type=Path, required=True, help="the TTS system's speech folder")
    task1.add_argument("--sentences", type=Path, required=True, help="the speaker's sentences.txt")
    task1.add_argument("--num-utterances", type=int, default=50)
    task1.add_argument("--out-dir", type=Path, required=True)
    task2 = tasks.add_parser("task2", help="Track 2: enhanced test mixtures")
    task2.add_argument("--speaker", required=True)
    task2.add_argument("--model", type=Path, required=True, help="model checkpoint (.pt)")
    task2.add_argument("--test-dir", type=Path, required=True, help="test folder of the mixtures (test.csv)")
    task2.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    task2.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    task2.add_argument("--out-dir", type=Path, required=True)
    archive = tasks.add_parser("zip", help="one zip of speaker folders")
    archive.add_argument("--folders", type=Path, nargs="+", required=True)
    archive.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    count = {"task1": export_task1, "task2": export_task2, "zip": export_zip}[args.task](args)
    log.info("%s: %d files -> %s", args.task, count, getattr(args, "out_dir", None) or args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
