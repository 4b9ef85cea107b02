"""Prepare a real speaker's own speech (the gt condition) as a speech folder.

From LibriTTS test-clean (--libritts-dir, --libritts-id): the speaker's utterances that read
its sentences (sentences.txt, matched on letters and digits), in the order of the
sentences file, so that validation and training rows follow the list the TTS systems read.
The test set's utterances and the enrollment clip (named in speaker.json by
prepare_speaker) are left out. If fewer than --num-utterances read a sentence, the
speaker's other utterances fill the rest, in id order, with `matched_sentence` false
(logged). From a folder (--gt-dir): its audio files by name, each with the text of
a same-stem .txt file beside it when there is one.

    python -m workflow_scripts.prepare_gt --speaker F0 --record data/speakers/F0/speaker.json \
        --sentences data/speakers/F0/sentences.txt --libritts-dir resources/libritts_test_clean \
        --libritts-id 237 --num-utterances 50 --out-dir data/speakers/F0/gt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from workflow_scripts.files import corpora
from workflow_scripts.files.audio import atomic_dir, audio_files, read_checked
from workflow_scripts.files.folders import write_speech_folder
from workflow_scripts.files.sentences import read_sentence_file
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.real_speakers import libritts_roles

log = logging.getLogger("prepare_gt")


def libritts_selection(args) -> pd.DataFrame:
    """utt_id, wav, text, matched_sentence of the utterances to use, in order of use."""
    record = json.loads(Path(args.record).read_text())
    test = record.get("test", {})
    left_out = set(test.get("test_utterances", [])) | set(test.get("enrollment_utterances", []))
    utterances = corpora.libritts_utterances(args.libritts_dir, args.libritts_id)
    roles = libritts_roles(utterances, read_sentence_file(args.sentences))
    roles = roles[~roles.utt_id.isin(left_out)]
    matched = roles[roles.role == "sentence"].sort_values(["sentence_index", "utt_id"])
    others = roles[roles.role != "sentence"].sort_values("utt_id")
    if len(matched) < args.num_utterances:
        log.warning(
            "LibriTTS speaker %s: %d utterances read the speaker's sentences, fewer than %d: "
            "%d other utterances of the speaker fill the rest",
            args.libritts_id, len(matched), args.num_utterances, args.num_utterances - len(matched),
        )
    chosen = pd.concat([matched.assign(matched_sentence=True), others.assign(matched_sentence=False)])
    chosen = chosen.head(args.num_utterances)
    if len(chosen) < args.num_utterances:
        raise ValueError(
            f"LibriTTS speaker {args.libritts_id}: {len(chosen)} utterances outside the test set, fewer than"
            f" the {args.num_utterances} the gt data sizes need"
        )
    return chosen.rename(columns={"original_text": "text"})[["utt_id", "wav", "text", "matched_sentence"]]


def folder_selection(args) -> pd.DataFrame:
    files = audio_files(args.gt_dir, "gt")
    if len(files) < args.num_utterances:
        raise ValueError(
            f"{args.gt_dir}: {len(files)} recordings, fewer than the {args.num_utterances} the gt data sizes need"
        )
    texts = []
    for path in files:
        text_file = path.with_suffix(".txt")
        texts.append(text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else "")
    return pd.DataFrame({"utt_id": [f"{args.speaker}_{p.stem}" for p in files], "wav": [str(p) for p in files],
                         "text": texts, "source": [p.name for p in files]})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", required=True)
    parser.add_argument("--record", type=Path, required=True, help="speaker.json of prepare_speaker")
    parser.add_argument("--sentences", type=Path, required=True, help="the speaker's sentences.txt")
    parser.add_argument("--libritts-dir", type=Path, help="LibriTTS test-clean")
    parser.add_argument("--libritts-id", help="the speaker's LibriTTS id")
    parser.add_argument("--gt-dir", type=Path, help="folder of the speaker's recordings (instead of LibriTTS)")
    parser.add_argument("--num-utterances", type=int, required=True, help="the largest gt size's val + train")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if (args.gt_dir is None) == (args.libritts_dir is None):
        parser.error("give one of --gt-dir and --libritts-dir")
    if args.libritts_dir and not args.libritts_id:
        parser.error("--libritts-dir needs --libritts-id")
    if args.num_utterances < 1:
        parser.error(f"--num-utterances must be >= 1, got {args.num_utterances}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if not args.record.is_file():
        raise FileNotFoundError(f"{args.record}: speaker record not found")
    chosen = libritts_selection(args) if args.libritts_dir else folder_selection(args)
    rows = []
    for row in tqdm(chosen.to_dict("records"), desc=f"{args.speaker} gt", mininterval=5.0):
        wav = row.pop("wav")
        rows.append({**row, "audio": read_checked(wav, "speech")})
    with atomic_dir(args.out_dir) as tmp:
        write_speech_folder(tmp, rows)
    log.info("%s: %d utterances of real speech in %s", args.speaker, len(rows), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
