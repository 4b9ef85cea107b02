import json
import shlex

import pandas as pd
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


def read_speaker_sheet(path):
    sheet = pd.read_csv(path, sep="\t", dtype={"speaker": str}, comment="#")
    validate(sheet, schema="../schemas/speakers.schema.yaml")
    duplicated = sorted(set(sheet.speaker[sheet.speaker.duplicated()]))
    if duplicated:
        raise ValueError(f"{path}: duplicate speaker ids: {', '.join(duplicated)}")
    return sheet.set_index("speaker", drop=False)


speakers = read_speaker_sheet(config["speakers"])
TTS_SYSTEMS = [source for source in config["sources"] if source != "gt"]
_undefined = [name for name in TTS_SYSTEMS if name not in config.get("tts", {})]
if _undefined:
    raise ValueError(
        f"config 'sources' names TTS systems that 'tts' does not define: {', '.join(_undefined)}"
        f" (defined: {', '.join(config.get('tts', {})) or 'none'})"
    )
DATA_SIZES = config["data_sizes"]
MODEL_SIZES = config["model_sizes"]
# Every model cache (coqui, Hugging Face, Whisper, speechbrain) lives here.
MODEL_DIR = config.get(
    "model_dir", config.get("tts_scoring", {}).get("model_dir", "models")
)
# Speech is synthesized once, for the largest size; smaller sizes are subsets.
NUM_UTTERANCES = max(size["train"] + size["val"] for size in DATA_SIZES.values())


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True))


wildcard_constraints:
    speaker=_alternatives(speakers.index),
    source=_alternatives(config["sources"]),
    tts=_alternatives(TTS_SYSTEMS) if TTS_SYSTEMS else "(?!)",
    size=_alternatives(DATA_SIZES),
    model=_alternatives(MODEL_SIZES),


def cli_args(options):
    """A dict of options as command-line arguments (`snr_db: [a, b]` -> `--snr-db a b`)."""
    args = []
    for key, value in options.items():
        args.append(f"--{key.replace('_', '-')}")
        values = value if isinstance(value, list) else [value]
        args.extend(shlex.quote(str(v)) for v in values)
    return " ".join(args)


def speech_dir(wildcards):
    """The fine-tuning speech of a (source, speaker): real or synthesized."""
    if wildcards.source == "gt":
        return f"data/demo/{wildcards.speaker}/gt"
    return f"results/speech/{wildcards.source}/{wildcards.speaker}"


def generalist_checkpoint(wildcards):
    if config["generalist"]["source"] == "pretrain":
        return f"results/pretrain/{wildcards.model}/model.pt"
    return config["generalist"]["checkpoint"][wildcards.model]


def finetuned_conditions():
    """(source, size) pairs: gt and every TTS system at every data size."""
    return [(source, size) for source in config["sources"] for size in DATA_SIZES]


def eval_tables():
    """Every per-utterance evaluation table, labelled for the aggregate step."""
    tables = {}
    for model in MODEL_SIZES:
        for speaker in speakers.index:
            tables[f"{model}:generalist:-:{speaker}"] = (
                f"results/eval/{model}/generalist/{speaker}.csv"
            )
            for source, size in finetuned_conditions():
                tables[f"{model}:{source}:{size}:{speaker}"] = (
                    f"results/eval/{model}/{source}/{size}/{speaker}.csv"
                )
    return tables


def tts_score_summaries():
    return {
        f"{source}:{speaker}": f"results/tts_scores/{source}/{speaker}.json"
        for source in config["sources"]
        for speaker in speakers.index
    }


def labelled_args(tables):
    return " ".join(shlex.quote(f"{label}={path}") for label, path in tables.items())


def get_final_output():
    return [
        "results/summary.md",
        "results/summary.csv",
        "results/tts_summary.md",
        "results/plots/sdri_by_condition.png",
        "results/plots/secs_vs_sdri.png",
    ]


# Jobs import the steps from this checkout, whichever environment runs them.
shell.prefix(f"export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
