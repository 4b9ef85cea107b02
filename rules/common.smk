import json
import os
import re
import shlex

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from workflow_scripts.tts import BACKENDS as TTS_BACKENDS
from workflow_scripts.world import user_files

# each field checked, and every default of the schema filled in
validate(config, schema="../schemas/config.schema.yaml")

# ---- the speaker sheet ----------------------------------------------------------

# columns read as text (ids and paths); `seed` is a number
TEXT_COLUMNS = ["speaker", "group", "challenge_id", "libritts_id", "enrollment_text"]
FOLDER_COLUMNS = ["noises", "test_clean", "test_mixtures", "gt"]
FILE_COLUMNS = ["enrollment", "sentences", *FOLDER_COLUMNS]


def sheet_error(path, row_number, speaker, message):
    where = f"row {row_number}" + (f" (speaker {speaker})" if speaker else "")
    return WorkflowError(f"{path}: {where}: {message}")


def read_speaker_sheet(path):
    """The speaker sheet, validated; errors name the file, the row and the speaker."""
    if not os.path.isfile(path):
        raise WorkflowError(f"{path}: speaker sheet not found (config 'speakers')")
    dtypes = {column: str for column in TEXT_COLUMNS + FILE_COLUMNS}
    sheet = pd.read_csv(path, sep="\t", dtype=dtypes, comment="#")
    try:
        validate(sheet, schema="../schemas/speakers.schema.yaml")
    except WorkflowError as exc:
        # snakemake says "row i of data frame"; name the sheet and the speaker too
        match = re.search(r"row (\d+) of data frame", str(exc))
        index = int(match.group(1)) if match else 0
        cause = exc.__cause__ or exc.__context__
        reason = getattr(cause, "message", None) or str(exc)
        if getattr(cause, "path", None):
            reason = f"column {'/'.join(map(str, cause.path))}: {reason}"
        speaker = sheet.speaker.iloc[index] if "speaker" in sheet.columns else ""
        raise sheet_error(path, index + 1, speaker, reason) from None
    duplicated = sorted(set(sheet.speaker[sheet.speaker.duplicated()]))
    if duplicated:
        raise WorkflowError(f"{path}: duplicate speaker ids: {', '.join(duplicated)}")
    for number, row in enumerate(sheet.itertuples(index=False), start=1):
        problem = speaker_row_problem(row._asdict())
        if problem:
            raise sheet_error(path, number, row.speaker, problem)
    return sheet.set_index("speaker", drop=False)


def given(row, column):
    value = row.get(column)
    return isinstance(value, str) and value.strip() != ""


def speaker_row_problem(row):
    """What is wrong with a row (what it must name, by group), or None."""
    named = [c for c in FILE_COLUMNS + ["challenge_id", "libritts_id"] if given(row, c)]
    if row["group"] == "demo":
        if named:
            return (
                f"a demo speaker is built from its seed; remove {', '.join(named)}"
                " or set group to real or virtual"
            )
        return None
    if pd.notna(row.get("seed")):
        return "`seed` is only for group demo"
    if row["group"] == "virtual" and given(row, "libritts_id"):
        return "a virtual speaker has no LibriTTS speaker"
    from_challenge = given(row, "challenge_id")
    wanted = [
        ("enrollment", "enrollment clip"),
        ("sentences",) * 2,
        ("noises", "noise set"),
    ]
    for column, what in wanted:
        if not (from_challenge or given(row, column)):
            return f"no {what}: give `challenge_id` or `{column}`"
    tests = ["challenge_id", "libritts_id", "test_clean", "test_mixtures"]
    if not any(given(row, c) for c in tests):
        return (
            "no test set: give `test_clean` (clean recordings), `test_mixtures`,"
            " `libritts_id` or `challenge_id`"
        )
    for column in [c for c in FILE_COLUMNS if given(row, c)]:
        folder = column in FOLDER_COLUMNS
        if not (os.path.isdir if folder else os.path.isfile)(row[column]):
            kind = "folder" if folder else "file"
            return f"`{column}`: {kind} not found: {row[column]}"
    return None


speakers = read_speaker_sheet(config["speakers"])


def check_user_files():
    """Each speaker's own files against what the jobs will ask of them (world.user_files)."""
    sentences = user_files.synthesis_demand(
        DATA_SIZES, CONDITIONS, TTS_SYSTEMS, NUM_UTTERANCES, TRACK1_UTTERANCES
    )
    gt = user_files.largest_size(DATA_SIZES, CONDITIONS.get("gt", []), "gt")
    min_seconds = config["enrollment"]["min_seconds"]
    for number, speaker in enumerate(speakers.index, start=1):
        if speaker in FILE_SPEAKERS:  # a row without file columns reads nothing
            problem = user_files.user_files_problem(
                speaker_row(speaker), min_seconds, sentences, gt
            )
            if problem:
                raise sheet_error(config["speakers"], number, speaker, problem)


def speaker_row(speaker):
    return speakers.loc[speaker].to_dict()


def speakers_where(test):
    return [s for s in speakers.index if test(speaker_row(s))]


DEMO_SPEAKERS = speakers_where(lambda row: row["group"] == "demo")
FILE_SPEAKERS = speakers_where(lambda row: row["group"] != "demo")
CHALLENGE_SPEAKERS = speakers_where(lambda row: given(row, "challenge_id"))
# real speech for the gt condition: the demo world's, LibriTTS's, or the user's folder
GT_SPEAKERS = speakers_where(
    lambda row: row["group"] == "demo" or given(row, "libritts_id") or given(row, "gt")
)
# a test set with clean references: everything else is enhanced but not scored
CLEAN_TEST_SPEAKERS = speakers_where(
    lambda row: row["group"] == "demo"
    or given(row, "libritts_id")
    or given(row, "test_clean")
)

# ---- conditions (sources x data sizes), checked against each other -----------------

DATA_SIZES = config["data_sizes"]
MODEL_SIZES = config["model_sizes"]
GENERALIST = config["generalist"]
EXPORT = config.get("export", {})


# source -> data sizes, from `conditions` or from `sources` (every source at every size)
if "sources" in config:
    CONDITIONS = {source: list(DATA_SIZES) for source in config["sources"]}
else:
    CONDITIONS = dict(config.get("conditions", {}))
SOURCES = list(CONDITIONS)
TTS_SYSTEMS = [source for source in SOURCES if source != "gt"]


def check_config():
    """The checks across config fields and the sheet (the schema checks each field alone)."""
    if ("sources" in config) == ("conditions" in config):
        raise WorkflowError(
            "config: give either 'sources' (every source at every data size) or"
            " 'conditions' (source -> its data sizes)"
        )
    for source, sizes in config.get("conditions", {}).items():
        unknown = [size for size in sizes if size not in DATA_SIZES]
        if unknown:
            raise WorkflowError(
                f"config 'conditions.{source}' names data sizes that 'data_sizes' does not"
                f" define: {', '.join(unknown)} (defined: {', '.join(DATA_SIZES)})"
            )
    undefined = [name for name in TTS_SYSTEMS if name not in config["tts"]]
    if undefined:
        raise WorkflowError(
            f"config '{'sources' if 'sources' in config else 'conditions'}' names TTS systems"
            f" that 'tts' does not define: {', '.join(undefined)}"
            f" (defined: {', '.join(config['tts']) or 'none'})"
        )
    unknown_backends = sorted(
        f"{name}: {system['backend']!r}"
        for name, system in config["tts"].items()
        if system["backend"] not in TTS_BACKENDS
    )
    if unknown_backends:
        raise WorkflowError(
            f"config 'tts' names unknown backends ({'; '.join(unknown_backends)});"
            f" known: {', '.join(sorted(TTS_BACKENDS))} (workflow_scripts/tts/__init__.py)"
        )
    if DEMO_SPEAKERS and "demo_world" not in config:
        raise WorkflowError(
            f"{config['speakers']}: demo speakers ({', '.join(DEMO_SPEAKERS)}) need config 'demo_world'"
        )
    if GENERALIST["source"] == "challenge" and "large" in MODEL_SIZES:
        raise WorkflowError(
            "config: generalist.source is 'challenge', but the challenge released no large"
            " generalist (tiny, small and medium only): drop 'large' from model_sizes or use"
            " generalist.source: pretrain"
        )
    pretrain_gpus, pretrain = GENERALIST["pretrain_gpus"], GENERALIST.get(
        "pretrain", {}
    )
    if pretrain.get("batch_size", pretrain_gpus) % pretrain_gpus:
        raise WorkflowError(
            f"config: generalist.pretrain_gpus {pretrain_gpus} does not divide generalist.pretrain.batch_size"
            f" {pretrain['batch_size']}: each GPU takes an equal share of every batch"
        )
    if GENERALIST["source"] == "checkpoint":
        missing = [m for m in MODEL_SIZES if m not in GENERALIST.get("checkpoint", {})]
        if missing:
            raise WorkflowError(
                f"config: generalist.checkpoint has no path for model sizes {', '.join(missing)}"
            )
    task2 = EXPORT.get("task2")
    if task2 and task2["model"] not in MODEL_SIZES:
        raise WorkflowError(
            f"config export.task2.model '{task2['model']}' is not in model_sizes"
        )
    if task2 and task2["source"] != "generalist":
        if task2.get("size") not in CONDITIONS.get(task2["source"], []):
            raise WorkflowError(
                f"config export.task2: '{task2['source']}' at size '{task2.get('size')}' is"
                " not among the conditions"
            )
    without_gt = [s for s in CHALLENGE_SPEAKERS if s not in GT_SPEAKERS]
    if task2 and task2["source"] == "gt" and without_gt:
        raise WorkflowError(
            "config export.task2: source gt, but these speakers have no real speech:"
            f" {', '.join(without_gt)}"
        )
    task1 = EXPORT.get("task1")
    if task1 and task1["tts"] not in TTS_SYSTEMS:
        raise WorkflowError(
            f"config export.task1.tts '{task1['tts']}' is not a TTS system of the conditions"
        )
    check_folder_systems()


from functools import cache

from snakemake.logging import logger

from workflow_scripts.files import tts_folders

# TTS systems that bring speech made elsewhere (backend folder): imported, not synthesized
FOLDER_SYSTEMS = [
    s for s in TTS_SYSTEMS if config["tts"].get(s, {}).get("backend") == "folder"
]


@cache
def folder_speech(tts, speaker):
    """A folder system's files of a speaker (files.tts_folders), found once while parsing;
    a Track 1 layout names the speaker by its challenge id, where it has one."""
    row = speaker_row(speaker)
    spk = row["challenge_id"] if given(row, "challenge_id") else speaker
    path = config["tts"][tts]["options"]["path"]
    try:
        return tts_folders.speaker_speech(path, speaker, spk)
    except tts_folders.SpeechFolderError as exc:
        raise WorkflowError(f"config tts.{tts} (backend folder): {exc}") from None


def check_folder_systems():
    """Every speaker's files of a folder system, counted against its data sizes: a size needing
    more stops here, or with options.missing_sizes: skip is left out, with a warning."""
    for name in FOLDER_SYSTEMS:
        speeches = {speaker: folder_speech(name, speaker) for speaker in speakers.index}
        needed = {
            s: DATA_SIZES[s]["train"] + DATA_SIZES[s]["val"] for s in CONDITIONS[name]
        }
        skip = config["tts"][name]["options"]["missing_sizes"] == "skip"
        try:
            kept, warnings = tts_folders.sizes_within(name, speeches, needed, skip)
        except tts_folders.SpeechFolderError as exc:
            raise WorkflowError(f"config tts.{name} (backend folder): {exc}") from None
        for warning in warnings:
            logger.warning(f"config tts.{name}: {warning}")
        CONDITIONS[name] = kept


check_config()


def utterances_of(sizes):
    return max(
        (DATA_SIZES[s]["train"] + DATA_SIZES[s]["val"] for s in sizes), default=0
    )


# Track 1 asks for the 50 given sentences of each speaker: the first 50 of its sentences
TRACK1_UTTERANCES = 50
# Speech is synthesized once, for the largest size; smaller sizes are subsets.
NUM_UTTERANCES = max(
    [utterances_of(sizes) for sizes in CONDITIONS.values()]
    + [TRACK1_UTTERANCES if "task1" in EXPORT else 0]
)
GT_UTTERANCES = utterances_of(CONDITIONS.get("gt", []))
check_user_files()  # (defined with the sheet check) before any job: the sizes are known now


def _alternatives(names):
    """A regex of exactly these names (one that matches nothing when there are none)."""
    names = [re.escape(str(name)) for name in names]
    return "|".join(sorted(names, key=len, reverse=True)) if names else "(?!)"


wildcard_constraints:
    speaker=_alternatives(speakers.index),
    source=_alternatives(SOURCES),
    tts=_alternatives(TTS_SYSTEMS),
    size=_alternatives(DATA_SIZES),
    model=_alternatives(MODEL_SIZES),
    resource="[a-z0-9_]+",


# ---- shared by several rule files -----------------------------------------------------


def cli_args(options):
    """A dict of options as command-line arguments (`snr_db: [a, b]` -> `--snr-db a b`;
    `flag: true` -> `--flag`, `flag: false` -> nothing)."""
    args = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args += [flag] if value else []
            continue
        args.append(flag)
        values = value if isinstance(value, list) else [value]
        args.extend(shlex.quote(str(v)) for v in values)
    return " ".join(args)


def path_args(input, flags):
    """Named inputs as `--flag path` for the names present."""
    return " ".join(
        f"--{flags.get(name, name).replace('_', '-')} {shlex.quote(str(input[name]))}"
        for name in input.keys()
        if name in flags
    )


def speech_folder(source, speaker):
    """The fine-tuning speech of a (source, speaker): real or synthesized."""
    if source == "gt":
        return f"data/speakers/{speaker}/gt"
    return f"results/speech/{source}/{speaker}"


def speech_dir(wildcards):
    return speech_folder(wildcards.source, wildcards.speaker)


def finetuned_conditions(speaker):
    """(source, size) pairs of a speaker; gt only where the speaker has real speech."""
    return [
        (source, size)
        for source, sizes in CONDITIONS.items()
        if source != "gt" or speaker in GT_SPEAKERS
        for size in sizes
    ]


def generalist_path(model):
    source = GENERALIST["source"]
    if source == "pretrain":
        return f"results/pretrain/{model}/model.pt"
    if source == "challenge":
        return f"data/generalists/challenge/{model}.pt"
    return GENERALIST["checkpoint"][model]


def generalist_checkpoint(wildcards):
    return generalist_path(wildcards.model)


def export_outputs():
    if not EXPORT or not CHALLENGE_SPEAKERS:
        return []
    return [
        f"results/export/{EXPORT['team']}_task{t}.zip"
        for t in (1, 2)
        if f"task{t}" in EXPORT
    ]


def get_final_output():
    return [
        "results/summary.md",
        "results/summary.csv",
        "results/tts_summary.md",
        "results/plots/sdri_by_condition.png",
        "results/plots/secs_vs_sdri.png",
        *analysis_targets(),
        *export_outputs(),
    ]


# Jobs import the steps from this checkout, whichever environment runs them.
shell.prefix(f"export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
