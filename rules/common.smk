import json
import os
import re
import shlex
import sys

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# ---- the speaker sheet ----------------------------------------------------------

# columns read as text (ids and paths); `seed` is a number
TEXT_COLUMNS = ["speaker", "group", "challenge_id", "libritts_id"]
FILE_COLUMNS = [
    "enrollment",
    "sentences",
    "noises",
    "test_clean",
    "test_mixtures",
    "gt",
]
FOLDER_COLUMNS = ["noises", "test_clean", "test_mixtures", "gt"]


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
        check_speaker_row(path, number, row._asdict())
    return sheet.set_index("speaker", drop=False)


def given(row, column):
    value = row.get(column)
    return isinstance(value, str) and value.strip() != ""


def check_speaker_row(path, number, row):
    """What a row must name, by group, with one message per problem."""
    speaker = row["speaker"]
    named = [c for c in FILE_COLUMNS + ["challenge_id", "libritts_id"] if given(row, c)]
    if row["group"] == "demo":
        if named:
            raise sheet_error(
                path,
                number,
                speaker,
                f"a demo speaker is built from its seed; remove {', '.join(named)}"
                " or set group to real or virtual",
            )
        return
    if pd.notna(row.get("seed")):
        raise sheet_error(path, number, speaker, "`seed` is only for group demo")
    if row["group"] == "virtual" and given(row, "libritts_id"):
        raise sheet_error(
            path, number, speaker, "a virtual speaker has no LibriTTS speaker"
        )
    from_challenge = given(row, "challenge_id")
    for column, what in [
        ("enrollment", "enrollment clip"),
        ("sentences", "sentences"),
        ("noises", "noise set"),
    ]:
        if not (from_challenge or given(row, column)):
            raise sheet_error(
                path, number, speaker, f"no {what}: give `challenge_id` or `{column}`"
            )
    has_test = from_challenge or any(
        given(row, c) for c in ["libritts_id", "test_clean", "test_mixtures"]
    )
    if not has_test:
        raise sheet_error(
            path,
            number,
            speaker,
            "no test set: give `test_clean` (clean recordings), `test_mixtures`,"
            " `libritts_id` or `challenge_id`",
        )
    for column in FILE_COLUMNS:
        if not given(row, column):
            continue
        file = row[column]
        exists = (
            os.path.isdir(file) if column in FOLDER_COLUMNS else os.path.isfile(file)
        )
        if not exists:
            kind = "folder" if column in FOLDER_COLUMNS else "file"
            raise sheet_error(
                path, number, speaker, f"`{column}`: {kind} not found: {file}"
            )


speakers = read_speaker_sheet(config["speakers"])


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

# ---- conditions: sources x data sizes ---------------------------------------------

DATA_SIZES = config["data_sizes"]
MODEL_SIZES = config["model_sizes"]


def read_conditions():
    """source -> data sizes, from `conditions` or from `sources` (every source at every size)."""
    if ("sources" in config) == ("conditions" in config):
        raise WorkflowError(
            "config: give either 'sources' (every source at every data size) or"
            " 'conditions' (source -> its data sizes)"
        )
    if "sources" in config:
        return {source: list(DATA_SIZES) for source in config["sources"]}
    for source, sizes in config["conditions"].items():
        unknown = [size for size in sizes if size not in DATA_SIZES]
        if unknown:
            raise WorkflowError(
                f"config 'conditions.{source}' names data sizes that 'data_sizes' does not"
                f" define: {', '.join(unknown)} (defined: {', '.join(DATA_SIZES)})"
            )
    return dict(config["conditions"])


sys.path.insert(
    0, workflow.basedir
)  # the step package, for its registry of TTS backends
from workflow_scripts.tts import BACKENDS as TTS_BACKENDS
from workflow_scripts.runtime.gpu import jobs_per_gpu_from_env

CONDITIONS = read_conditions()
SOURCES = list(CONDITIONS)
TTS_SYSTEMS = [source for source in SOURCES if source != "gt"]
_undefined = [name for name in TTS_SYSTEMS if name not in config.get("tts", {})]
if _undefined:
    raise WorkflowError(
        f"config '{'sources' if 'sources' in config else 'conditions'}' names TTS systems"
        f" that 'tts' does not define: {', '.join(_undefined)}"
        f" (defined: {', '.join(config.get('tts', {})) or 'none'})"
    )
_unknown_backends = sorted(
    {
        f"{name}: {system['backend']!r}"
        for name, system in config.get("tts", {}).items()
        if system["backend"] not in TTS_BACKENDS
    }
)
if _unknown_backends:
    raise WorkflowError(
        f"config 'tts' names unknown backends ({'; '.join(_unknown_backends)});"
        f" known: {', '.join(sorted(TTS_BACKENDS))} (workflow_scripts/tts/__init__.py)"
    )
if DEMO_SPEAKERS and "demo_world" not in config:
    raise WorkflowError(
        f"{config['speakers']}: demo speakers ({', '.join(DEMO_SPEAKERS)}) need config 'demo_world'"
    )
# Every model cache (coqui, Hugging Face, Whisper, speechbrain) lives here.
MODEL_DIR = config.get(
    "model_dir", config.get("tts_scoring", {}).get("model_dir", "models")
)
# The conda env (envs/) of each TTS backend's tool family.
TTS_CONDA_ENVS = {
    "world_clone": "tts-offline",
    "flite": "tts-offline",
    "speecht5": "tts-hf",
    "yourtts": "tts-coqui",
    "xtts": "tts-coqui",
}


def tts_conda_env(wildcards):
    backend = config["tts"][wildcards.tts]["backend"]
    return f"../envs/{TTS_CONDA_ENVS.get(backend, 'tts-offline')}.yaml"


def utterances_of(sizes):
    return max(
        (DATA_SIZES[s]["train"] + DATA_SIZES[s]["val"] for s in sizes), default=0
    )


EXPORT = config.get("export", {})
TEAM = re.escape(EXPORT["team"]) if EXPORT else "(?!)"
# Track 1 asks for the 50 given sentences of each speaker: the first 50 of its sentences
TRACK1_UTTERANCES = 50
# Speech is synthesized once, for the largest size; smaller sizes are subsets.
NUM_UTTERANCES = max(
    [utterances_of(sizes) for sizes in CONDITIONS.values()]
    + [TRACK1_UTTERANCES if "task1" in EXPORT else 0]
)
GT_UTTERANCES = utterances_of(CONDITIONS.get("gt", []))


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


# ---- the demo world ------------------------------------------------------------

DEMO_WORLD = config.get("demo_world", {})


def demo_world_args():
    keys = ["num_test_utterances", "num_noises", "enrollment_seconds", "base_voices"]
    args = cli_args({key: DEMO_WORLD[key] for key in keys if key in DEMO_WORLD})
    snrs = " ".join(map(str, DEMO_WORLD.get("test_snrs_db", [])))
    return f"{args} --test-snrs {snrs}" if snrs else args


# ---- external resources ---------------------------------------------------------

RESOURCES = config.get("resources", {})
CHALLENGE = "genda_challenge"
LIBRITTS = "libritts_test_clean"
MUSAN = "musan"


def resource_dir(name, needed_by):
    if name not in RESOURCES:
        raise WorkflowError(
            f"config 'resources' has no entry '{name}', needed by {needed_by}"
        )
    return f"resources/{name}"


def download_args(wildcards):
    spec = RESOURCES[wildcards.resource]
    args = {}
    for key in ("url", "sha256", "md5", "local_dir"):
        if spec.get(key):
            args[key] = spec[key]
    if spec.get("members"):
        args["members"] = spec["members"]
    if config.get("mirror"):
        args["mirror"] = config["mirror"]
    args = cli_args(args)
    if spec.get("strip_top_folder"):
        args += " --strip-top-folder"
    if config.get("keep_archives"):
        args += " --keep-archive"
    return args


# ---- per-speaker data -------------------------------------------------------------

SPEAKER_DATA = {
    "num_test_utterances": 9,
    "test_snrs_db": [-2.5, 0.0, 2.5],
    "seed": 0,
    **config.get("speaker_data", {}),
}


def speaker_inputs(wildcards):
    """What prepare_speaker reads: resources and the sheet's own files."""
    row = speaker_row(wildcards.speaker)
    needed_by = f"speaker {wildcards.speaker}"
    inputs = {}
    if given(row, "challenge_id"):
        inputs["challenge_dir"] = resource_dir(CHALLENGE, needed_by)
        if not given(row, "noises"):
            inputs["musan_dir"] = resource_dir(MUSAN, needed_by)
    if given(row, "libritts_id") and not given(row, "test_clean"):
        inputs["libritts_dir"] = resource_dir(LIBRITTS, needed_by)
    for column in ["enrollment", "sentences", "noises", "test_clean", "test_mixtures"]:
        if given(row, column):
            inputs[column] = row[column]
    return inputs


def gt_inputs(wildcards):
    row = speaker_row(wildcards.speaker)
    inputs = {
        "record": f"data/speakers/{wildcards.speaker}/speaker.json",
        "sentences": f"data/speakers/{wildcards.speaker}/sentences.txt",
    }
    if given(row, "gt"):
        inputs["gt_dir"] = row["gt"]
    else:
        inputs["libritts_dir"] = resource_dir(LIBRITTS, f"speaker {wildcards.speaker}")
    return inputs


def path_args(input, flags):
    """Named inputs as `--flag path` for the names present."""
    return " ".join(
        f"--{flags.get(name, name).replace('_', '-')} {shlex.quote(str(input[name]))}"
        for name in input.keys()
        if name in flags
    )


def speaker_args(wildcards, input):
    row = speaker_row(wildcards.speaker)
    flags = {
        name: name
        for name in [
            "challenge_dir",
            "musan_dir",
            "libritts_dir",
            "enrollment",
            "sentences",
            "test_clean",
            "test_mixtures",
        ]
    }
    args = [
        f"--group {row['group']}",
        path_args(input, flags | {"noises": "noise_dir"}),
    ]
    if "challenge_dir" in input.keys():
        args.append(f"--challenge-id {row['challenge_id']}")
    if "libritts_dir" in input.keys():
        args.append(f"--libritts-id {row['libritts_id']}")
    return " ".join(args)


def gt_args(wildcards, input):
    row = speaker_row(wildcards.speaker)
    args = path_args(input, {"gt_dir": "gt_dir", "libritts_dir": "libritts_dir"})
    if "libritts_dir" in input.keys():
        args += f" --libritts-id {row['libritts_id']}"
    return args


def challenge_id(wildcards):
    return speaker_row(wildcards.speaker)["challenge_id"]


# ---- the generalist -----------------------------------------------------------------

GENERALIST = config["generalist"]
if GENERALIST["source"] == "challenge" and "large" in MODEL_SIZES:
    raise WorkflowError(
        "config: generalist.source is 'challenge', but the challenge released no large"
        " generalist (tiny, small and medium only): drop 'large' from model_sizes or use"
        " generalist.source: pretrain"
    )
if GENERALIST["source"] == "checkpoint":
    _missing = [m for m in MODEL_SIZES if m not in GENERALIST.get("checkpoint", {})]
    if _missing:
        raise WorkflowError(
            f"config: generalist.checkpoint has no path for model sizes {', '.join(_missing)}"
        )
PRETRAIN_POOL = config.get("pretrain_pool", {})


def generalist_path(model):
    source = GENERALIST["source"]
    if source == "pretrain":
        return f"results/pretrain/{model}/model.pt"
    if source == "challenge":
        return f"data/generalists/challenge/{model}.pt"
    return GENERALIST["checkpoint"][model]


def generalist_checkpoint(wildcards):
    return generalist_path(wildcards.model)


def pretrain_data(wildcards):
    """Pre-training speech and noises: the demo background pool, or LibriSpeech + MUSAN
    with the held-out MUSAN noises (val_noises) for validation."""
    if GENERALIST.get("pool", "demo") == "librispeech":
        return {
            "speech": "data/pretrain_pool/speech",
            "noises": "data/pretrain_pool/noises",
            "val_noises": "data/pretrain_pool/val_noises",
        }
    return {"speech": "data/background/speech", "noises": "data/background/noises"}


def pretrain_pool_inputs(wildcards):
    if not PRETRAIN_POOL:
        raise WorkflowError(
            "config: generalist.pool is 'librispeech' but 'pretrain_pool' is not set"
        )
    return {
        "speech": [resource_dir(n, "pretrain_pool") for n in PRETRAIN_POOL["speech"]],
        "noises": resource_dir(PRETRAIN_POOL["noises"], "pretrain_pool"),
    }


# ---- fine-tuning and evaluation -----------------------------------------------------


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


# finetune_stacking.by: speaker fine-tunes all of a speaker's conditions in one job
FINETUNE_STACKING = {
    "by": "none",
    "precision": "tf32",
    "batches": "device",
    "fused": True,
    "cuda_graph": True,
    **config.get("finetune_stacking", {}),
}
# a stack fills a GPU by itself and claims all of its slots (GENDA_JOBS_PER_GPU), so it
# counts as that many units of the gpu resource (profiles/default)
STACK_GPU_UNITS = jobs_per_gpu_from_env()


def finetune_stacks():
    """Rule name -> (speakers, their (source, size) conditions) of the stacked fine-tuning
    rules. A rule's outputs cannot depend on its wildcards, so the speakers without real
    speech (no gt condition) get a rule of their own."""
    every_condition = [(s, size) for s, sizes in CONDITIONS.items() for size in sizes]
    stacks = {}
    for speaker in speakers.index:
        conditions = finetuned_conditions(speaker)
        if conditions:
            name = "finetune_stacked"
            if conditions != every_condition:
                name = "finetune_stacked_no_gt"
            stacks.setdefault(name, ([], conditions))[0].append(speaker)
    return stacks


def finetune_loss_plot(source="{source}", size="{size}"):
    """A fine-tuned model's loss plot in the report (the finetune rule's, or with a fixed
    source and size, a member's of a stacked rule)."""
    labels = {
        "speaker": "{speaker}",
        "source": source,
        "size": size,
        "model": "{model}",
    }
    return report(
        f"results/finetune/{{model}}/{source}/{size}/{{speaker}}/loss.png",
        category="Fine-tuning",
        subcategory=f"{{model}} {source} {size}",
        labels=labels,
    )


def stacked_finetune_outputs(conditions):
    """Every member's model, training log and loss plot (the finetune rule's outputs)."""
    folders = [f"results/finetune/{{model}}/{c}/{s}/{{speaker}}" for c, s in conditions]
    return {
        "models": [f"{folder}/model.pt" for folder in folders],
        "histories": [f"{folder}/training_log.csv" for folder in folders],
        "loss_plots": [finetune_loss_plot(source, size) for source, size in conditions],
    }


def stacked_speech_dirs(wildcards):
    conditions = finetuned_conditions(wildcards.speaker)
    return list(
        dict.fromkeys(speech_folder(s, wildcards.speaker) for s, _ in conditions)
    )


def stacked_member_args(wildcards):
    """`--member SPEECH_DIR NUM_TRAIN NUM_VAL OUT_DIR` per condition of the speaker."""
    members = []
    for source, size in finetuned_conditions(wildcards.speaker):
        speech = speech_folder(source, wildcards.speaker)
        out_dir = (
            f"results/finetune/{wildcards.model}/{source}/{size}/{wildcards.speaker}"
        )
        train, val = DATA_SIZES[size]["train"], DATA_SIZES[size]["val"]
        members.append(
            f"--member {shlex.quote(speech)} {train} {val} {shlex.quote(out_dir)}"
        )
    return " ".join(members)


def mixture_scores(wildcards):
    """The mixtures' own scores, for test sets with clean references."""
    if wildcards.speaker in CLEAN_TEST_SPEAKERS:
        return f"results/eval/mixtures/{wildcards.speaker}.csv"
    return []


def input_scores_arg(wildcards, input):
    return f"--input-scores {input.input_scores}" if input.input_scores else ""


def eval_tables():
    """Every per-utterance evaluation table, labelled for the aggregate step."""
    tables = {}
    for model in MODEL_SIZES:
        for speaker in speakers.index:
            tables[f"{model}:generalist:-:{speaker}"] = (
                f"results/eval/{model}/generalist/{speaker}.csv"
            )
            for source, size in finetuned_conditions(speaker):
                tables[f"{model}:{source}:{size}:{speaker}"] = (
                    f"results/eval/{model}/{source}/{size}/{speaker}.csv"
                )
    return tables


def tts_score_summaries():
    return {
        f"{source}:{speaker}": f"results/tts_scores/{source}/{speaker}.json"
        for source in SOURCES
        for speaker in speakers.index
        if source != "gt" or speaker in GT_SPEAKERS
    }


def labelled_args(tables):
    return " ".join(shlex.quote(f"{label}={path}") for label, path in tables.items())


def speaker_groups_arg():
    return " ".join(f"{s}={speaker_row(s)['group']}" for s in speakers.index)


# ---- challenge exports ----------------------------------------------------------------


def check_export():
    if not EXPORT:
        return
    task2 = EXPORT.get("task2")
    if task2:
        if task2["model"] not in MODEL_SIZES:
            raise WorkflowError(
                f"config export.task2.model '{task2['model']}' is not in model_sizes"
            )
        if task2["source"] != "generalist" and task2.get("size") not in CONDITIONS.get(
            task2["source"], []
        ):
            raise WorkflowError(
                f"config export.task2: '{task2['source']}' at size '{task2.get('size')}' is"
                " not among the conditions"
            )
        without_gt = [s for s in CHALLENGE_SPEAKERS if s not in GT_SPEAKERS]
        if task2["source"] == "gt" and without_gt:
            raise WorkflowError(
                "config export.task2: source gt, but these speakers have no real speech:"
                f" {', '.join(without_gt)}"
            )
    task1 = EXPORT.get("task1")
    if task1 and task1["tts"] not in TTS_SYSTEMS:
        raise WorkflowError(
            f"config export.task1.tts '{task1['tts']}' is not a TTS system of the conditions"
        )


check_export()


def task2_model(wildcards):
    task2 = EXPORT["task2"]
    if task2["source"] == "generalist":
        return generalist_path(task2["model"])
    folders = [task2["model"], task2["source"], task2["size"], wildcards.speaker]
    return os.path.join("results", "finetune", *folders, "model.pt")


def export_outputs():
    if not EXPORT or not CHALLENGE_SPEAKERS:
        return []
    team = EXPORT["team"]
    return [
        f"results/export/{team}_task{task}.zip"
        for task in (1, 2)
        if f"task{task}" in EXPORT
    ]


def export_folders(task):
    team = EXPORT["team"]
    return [f"results/export/{team}_task{task}/{s}" for s in CHALLENGE_SPEAKERS]


def get_final_output():
    return [
        "results/summary.md",
        "results/summary.csv",
        "results/tts_summary.md",
        "results/plots/sdri_by_condition.png",
        "results/plots/secs_vs_sdri.png",
        *export_outputs(),
    ]


# TTS: the models each system needs, its conda env, and the XTTS license.


def models_needed(what):
    """What download_models fetches for a TTS system, or for `scoring`: kind -> names."""
    needed = {}

    def add(kind, name):
        needed.setdefault(kind, []).append(name)

    if what == "scoring":
        scoring = config["tts_scoring"]
        if scoring["asr"] in ("auto", "whisper"):
            add("whisper", scoring.get("whisper_model", "large-v3"))
        add(
            "speechbrain",
            scoring.get("secs_xvector_model", "speechbrain/spkrec-xvect-voxceleb"),
        )
        if "utmos" in scoring.get("mos", ["utmos", "dnsmos", "distillmos"]):
            add("huggingface", scoring.get("utmos_model", "Blinorot/UTMOS-PyTorch"))
        return needed
    system = config["tts"][what]
    options = system.get("options", {})
    if system["backend"] == "speecht5":
        add("huggingface", options.get("model", "microsoft/speecht5_tts"))
        add("huggingface", options.get("vocoder", "microsoft/speecht5_hifigan"))
        add(
            "speechbrain",
            options.get("speaker_encoder", "speechbrain/spkrec-xvect-voxceleb"),
        )
    elif system["backend"] == "yourtts":
        add(
            "coqui",
            options.get("model", "tts_models/multilingual/multi-dataset/your_tts"),
        )
    elif system["backend"] == "xtts":
        add(
            "coqui",
            options.get("model", "tts_models/multilingual/multi-dataset/xtts_v2"),
        )
    return needed


def model_manifest(what):
    """The download_models manifest a job waits for, when config asks for downloads."""
    if not config.get("download_models", False) or not models_needed(what):
        return []
    return [f"{MODEL_DIR}/manifests/{what}.json"]


def license_env(wildcards):
    """COQUI_TOS_AGREED=1 for XTTS jobs when config accepts the CPML license."""
    backend = config["tts"][wildcards.tts]["backend"]
    if backend == "xtts" and config.get("accept_coqui_license", False):
        return "COQUI_TOS_AGREED=1 "
    return ""


# Jobs import the steps from this checkout, whichever environment runs them.
shell.prefix(f"export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
