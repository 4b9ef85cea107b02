# The input functions and parameters of the rule files, under a header per rule file in
# the order the Snakefile includes them (functions stay out of the rule files, which
# hold rules only). What they share is in rules/common.smk.


# ---- rules/world.smk ------------------------------------------------------------------


def demo_world_args(wildcards):
    world = config["demo_world"]
    keys = ["num_test_utterances", "num_noises", "enrollment_seconds", "base_voices"]
    snrs = " ".join(map(str, world["test_snrs_db"]))
    return f"{cli_args({key: world[key] for key in keys})} --test-snrs {snrs}"


# ---- rules/data.smk -------------------------------------------------------------------

RESOURCES = config["resources"]
CHALLENGE, LIBRITTS, MUSAN = "genda_challenge", "libritts_test_clean", "musan"
PRETRAIN_POOL = config.get("pretrain_pool", {})
# how real and virtual speakers' test sets are made (config speaker_data)
SPEAKER_DATA_ARGS = cli_args(
    {
        key: config["speaker_data"][key]
        for key in ["num_test_utterances", "test_snrs_db", "seed"]
    }
)


def resource_dir(name, needed_by):
    if name not in RESOURCES:
        raise WorkflowError(
            f"config 'resources' has no entry '{name}', needed by {needed_by}"
        )
    return f"resources/{name}"


def download_args(wildcards):
    spec = RESOURCES[wildcards.resource]
    keys = ["url", "sha256", "md5", "local_dir", "members"]
    options = {key: spec[key] for key in keys if spec.get(key)}
    if config["mirror"]:
        options["mirror"] = config["mirror"]
    args = cli_args(options)
    if spec.get("strip_top_folder"):
        args += " --strip-top-folder"
    if config["keep_archives"]:
        args += " --keep-archive"
    return args


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


def speaker_args(wildcards, input):
    row = speaker_row(wildcards.speaker)
    names = ["challenge_dir", "musan_dir", "libritts_dir", "enrollment", "sentences"]
    flags = {name: name for name in names + ["test_clean", "test_mixtures"]}
    args = [
        f"--group {row['group']}",
        path_args(input, flags | {"noises": "noise_dir"}),
    ]
    if "challenge_dir" in input.keys():
        args.append(f"--challenge-id {row['challenge_id']}")
    if "libritts_dir" in input.keys():
        args.append(f"--libritts-id {row['libritts_id']}")
    return " ".join(args)


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


def gt_args(wildcards, input):
    row = speaker_row(wildcards.speaker)
    args = path_args(input, {"gt_dir": "gt_dir", "libritts_dir": "libritts_dir"})
    if "libritts_dir" in input.keys():
        args += f" --libritts-id {row['libritts_id']}"
    return args


def pretrain_pool_inputs(wildcards):
    if not PRETRAIN_POOL:
        raise WorkflowError(
            "config: generalist.pool is 'librispeech' but 'pretrain_pool' is not set"
        )
    return {
        "speech": [resource_dir(n, "pretrain_pool") for n in PRETRAIN_POOL["speech"]],
        "noises": resource_dir(PRETRAIN_POOL["noises"], "pretrain_pool"),
    }


# ---- rules/tts.smk --------------------------------------------------------------------

from workflow_scripts.tts import LICENSES as TTS_LICENSES

# Every model cache (coqui, Hugging Face, Whisper, speechbrain) lives here.
MODEL_DIR = config.get("model_dir", config["tts_scoring"]["model_dir"])
# the systems whose speech is synthesized (clone_voice, synthesize); the others are imported
SYNTHESIZED_SYSTEMS = [s for s in TTS_SYSTEMS if s not in FOLDER_SYSTEMS]


def tts_backend(wildcards):
    return TTS_BACKENDS[config["tts"][wildcards.tts]["backend"]]


def tts_conda_env(wildcards):
    return f"../envs/{tts_backend(wildcards).conda_env}.yaml"


def models_needed(what):
    """What download_models fetches for a TTS system, or for `scoring`: kind -> names."""
    if what != "scoring":
        system = config["tts"][what]
        needed = TTS_BACKENDS[system["backend"]].models_needed(system["options"])
        if transcribes_enrollment(what) and config["tts_scoring"]["asr"] in (
            "auto",
            "whisper",
        ):
            needed.setdefault("whisper", []).append(
                config["tts_scoring"]["whisper_model"]
            )
        return needed
    scoring, needed = config["tts_scoring"], {}
    if scoring["asr"] in ("auto", "whisper"):
        needed["whisper"] = [scoring["whisper_model"]]
    needed["speechbrain"] = [scoring["secs_xvector_model"]]
    if "utmos" in scoring["mos"]:
        needed["huggingface"] = [scoring["utmos_model"]]
    return needed


def tts_cpu_scores(wildcards):
    """The score_tts_cpu file score_tts reads, when tts_scoring.cpu_job is set."""
    if not config["tts_scoring"]["cpu_job"]:
        return []
    return f"results/tts_scores/{wildcards.source}/{wildcards.speaker}.cpu.json"


def model_manifest(what):
    """The download_models manifest a job waits for, when config asks for downloads."""
    if not config["download_models"] or not models_needed(what):
        return []
    return [f"{MODEL_DIR}/manifests/{what}.json"]


def folder_utterances(tts):
    """What import_speech takes of each speaker's files: the system's largest data size, or
    Track 1's 50 where the system is exported."""
    track1 = TRACK1_UTTERANCES if EXPORT.get("task1", {}).get("tts") == tts else 0
    return max(utterances_of(CONDITIONS[tts]), track1)


def imported_speech_inputs(wildcards):
    """What import_speech reads: the speaker's files that it takes from the folder
    system's folder (a changed file reruns that speaker's jobs only), its sentences."""
    speech = folder_speech(wildcards.tts, wildcards.speaker)
    count = min(folder_utterances(wildcards.tts), len(speech.audio))
    return {
        "files": speech.first(count).files(),
        "sentences": f"data/speakers/{wildcards.speaker}/sentences.txt",
    }


def import_speech_args(wildcards):
    return cli_args(
        {
            "speaker_dir": folder_speech(wildcards.tts, wildcards.speaker).folder,
            "min_seconds": config["tts"][wildcards.tts]["options"]["min_seconds"],
            "num_utterances": folder_utterances(wildcards.tts),
        }
    )


# the model licenses the config accepts (accept_coqui_license is coqui_cpml's older key)
ACCEPTED_LICENSES = set(config["accept_licenses"]) | (
    {"coqui_cpml"} if config["accept_coqui_license"] else set()
)


def license_env(wildcards):
    """<env>=1 (COQUI_TOS_AGREED=1, F5TTS_CC_BY_NC_ACCEPTED=1) for the jobs of a backend whose
    weights' license the config accepts; without it the backend refuses to start."""
    license = tts_backend(wildcards).license
    if license in ACCEPTED_LICENSES:
        return f"{TTS_LICENSES[license].env}=1 "
    return ""


def transcribes_enrollment(tts):
    """Whether the system's clone_voice jobs run the ASR: its backend is conditioned on the
    enrollment clip's transcript and a speaker's sheet row has no enrollment_text."""
    if not TTS_BACKENDS[config["tts"][tts]["backend"]].transcript:
        return False
    return not all(given(speaker_row(s), "enrollment_text") for s in speakers.index)


def enrollment_text_args(wildcards):
    """The transcript of the enrollment clip, for backends conditioned on it: the speaker
    sheet's enrollment_text, else the ASR of tts_scoring that transcribes the clip."""
    if not tts_backend(wildcards).transcript:
        return ""
    row = speaker_row(wildcards.speaker)
    if given(row, "enrollment_text"):
        return cli_args({"enrollment_text": " ".join(row["enrollment_text"].split())})
    scoring = config["tts_scoring"]
    return cli_args({"asr": scoring["asr"], "whisper_model": scoring["whisper_model"]})


# ---- rules/pretrain.smk ---------------------------------------------------------------


# Pre-training speech and noises: the demo background pool, or LibriSpeech + MUSAN with
# the held-out MUSAN noises (val_noises) for validation.
PRETRAIN_DATA = {
    "demo": {"speech": "data/background/speech", "noises": "data/background/noises"},
    "librispeech": {
        name: f"data/pretrain_pool/{name}"
        for name in ["speech", "noises", "val_noises"]
    },
}[GENERALIST["pool"]]


# ---- rules/finetune.smk ---------------------------------------------------------------


def condition_stacks(rule, with_generalist_only=False):
    """Rule name -> (speakers, their fine-tuned (source, size) conditions) of the rules made
    once per stack shape (`rule`, and `{rule}_no_gt`): a rule's outputs cannot depend on its
    wildcards, so the speakers without real speech (no gt condition) get a rule of their own.
    A speaker with no fine-tuned condition joins only `with_generalist_only`."""
    every_condition = [(s, size) for s, sizes in CONDITIONS.items() for size in sizes]
    stacks = {}
    for speaker in speakers.index:
        conditions = finetuned_conditions(speaker)
        if conditions or with_generalist_only:
            name = rule if conditions == every_condition else f"{rule}_no_gt"
            stacks.setdefault(name, ([], conditions))[0].append(speaker)
    return stacks


def finetune_stacks():
    """The stacked fine-tuning rules (finetune_stacking.by: speaker)."""
    return condition_stacks("finetune_stacked")


def finetune_loss_plot(source="{source}", size="{size}"):
    """A fine-tuned model's loss plot in the report (the finetune rule's, or with a fixed
    source and size, a member's of a stacked rule)."""
    return report(
        f"results/finetune/{{model}}/{source}/{size}/{{speaker}}/loss.png",
        caption="../report/finetune_loss.rst",
        category="Training curves",
        subcategory="fine-tuning ConvTasNet {model}",
        labels={"speaker": "{speaker}", "source": source, "size": size},
    )


def stacked_finetune_outputs(conditions):
    """Every member's model, training log, run config and loss plot (the finetune rule's outputs)."""
    folders = [f"results/finetune/{{model}}/{c}/{s}/{{speaker}}" for c, s in conditions]
    return {
        "models": [f"{folder}/model.pt" for folder in folders],
        "histories": [f"{folder}/training_log.csv" for folder in folders],
        "run_configs": [f"{folder}/config.yaml" for folder in folders],
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


# ---- rules/evaluate.smk ---------------------------------------------------------------


EVALUATION = config["evaluation"]
# WER of the mixtures and of the enhanced speech, with the ASR of tts_scoring
EVALUATION_ASR = config["tts_scoring"]["asr"] if EVALUATION["asr"] else "none"
# score_mixtures takes a GPU where Whisper may transcribe the mixtures
MIXTURE_SCORING_GPUS = 1 if EVALUATION_ASR in ("auto", "whisper") else 0


def nonintrusive_args():
    """The options of the scores that need no reference, the same for score_mixtures and
    evaluate (a change reruns both)."""
    options = {"mos": EVALUATION["mos"], "asr": EVALUATION_ASR}
    options["max_utterances"] = EVALUATION["max_utterances"]
    if EVALUATION_ASR != "none":
        options["whisper_model"] = config["tts_scoring"]["whisper_model"]
        options["model_dir"] = MODEL_DIR
    return cli_args(options)


def evaluation_models():
    """The download_models manifest of the ASR, when the evaluation transcribes."""
    return model_manifest("scoring") if EVALUATION_ASR != "none" else []


def mixture_scores(wildcards):
    """The mixtures' own scores, with a clean reference or without."""
    return f"results/eval/mixtures/{wildcards.speaker}.csv"


def input_scores_arg(wildcards, input):
    return f"--input-scores {input.input_scores}" if input.input_scores else ""


def evaluation_stacks():
    """The rules that evaluate the generalist and every fine-tuned model of a (model size,
    speaker) in one job (evaluation.by: speaker)."""
    return condition_stacks("evaluate_stacked", with_generalist_only=True)


def stacked_eval_outputs(conditions):
    """The per-utterance table and summary of the generalist and of each fine-tuned model
    (the evaluate_generalist and evaluate_finetuned rules' outputs)."""
    stems = ["results/eval/{model}/generalist/{speaker}"] + [
        f"results/eval/{{model}}/{source}/{size}/{{speaker}}"
        for source, size in conditions
    ]
    return {
        "tables": [f"{stem}.csv" for stem in stems],
        "summaries": [f"{stem}.json" for stem in stems],
    }


def stacked_eval_checkpoints(wildcards):
    return [
        f"results/finetune/{wildcards.model}/{source}/{size}/{wildcards.speaker}/model.pt"
        for source, size in finetuned_conditions(wildcards.speaker)
    ]


def stacked_eval_member_args(wildcards, input, output):
    """`--member MODEL OUT_CSV OUT_SUMMARY`: the generalist, then each fine-tuned model."""
    models = [input.generalist, *input.checkpoints]
    return " ".join(
        f"--member {shlex.quote(m)} {shlex.quote(t)} {shlex.quote(s)}"
        for m, t, s in zip(models, output.tables, output.summaries)
    )


# ---- rules/aggregate.smk --------------------------------------------------------------


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


# ---- rules/analysis.smk ---------------------------------------------------------------


def crossed_evaluations():
    """(model, source, size, train, test) of every crossed evaluation that config `cross`
    asks for: each model size, and the entry's sources and sizes (default: every condition
    of the training speaker). Checked before any job runs: both speakers in the sheet and
    apart, the test speaker's test set with clean references, and the condition fine-tuned
    for both speakers (the crossed model is the training speaker's, the matched one the test
    speaker's)."""
    evaluations = []
    for number, entry in enumerate(config["cross"]):
        train, test = entry["train"], entry["test"]
        where = f"config cross[{number}] (train {train}, test {test})"
        for role, speaker in (("train", train), ("test", test)):
            if speaker not in speakers.index:
                raise WorkflowError(
                    f"{where}: {role} speaker {speaker} is not in the speaker sheet"
                    f" {config['speakers']}"
                )
        if train == test:
            raise WorkflowError(f"{where}: a crossed pair needs two speakers")
        if test not in CLEAN_TEST_SPEAKERS:
            raise WorkflowError(
                f"{where}: {test}'s test mixtures have no clean references, so SDRi cannot"
                " be computed: give a test speaker with `test_clean` or a LibriTTS speaker"
            )
        trained = finetuned_conditions(train)
        sources = entry.get("sources") or list(dict.fromkeys(s for s, _ in trained))
        for source in sources:
            sizes = entry.get("sizes") or [z for s, z in trained if s == source]
            for size in sizes:
                for speaker in (train, test):
                    if (source, size) not in finetuned_conditions(speaker):
                        known = finetuned_conditions(speaker)
                        raise WorkflowError(
                            f"{where}: {speaker} is not fine-tuned on {source} {size}"
                            f" (its conditions: {', '.join(f'{s} {z}' for s, z in known)})"
                        )
                evaluations += [(m, source, size, train, test) for m in MODEL_SIZES]
    return list(dict.fromkeys(evaluations))


CROSSED = crossed_evaluations()
# sources with 3 or more data sizes: the data-size curve (Q3)
DATASIZE_SOURCES = [source for source, sizes in CONDITIONS.items() if len(sizes) >= 3]


def crossed_tables():
    return [
        f"results/eval_crossed/{model}/{source}/{size}/{train}/{test}.csv"
        for model, source, size, train, test in CROSSED
    ]


def analysis_speech():
    """`source:speaker` -> the fine-tuning speech folder, whose manifest gives the minutes of
    each data size (only for the data-size curve)."""
    if not DATASIZE_SOURCES:
        return {}
    return {
        f"{source}:{speaker}": speech_folder(source, speaker)
        for speaker in speakers.index
        for source in dict.fromkeys(s for s, _ in finetuned_conditions(speaker))
    }


def analysis_args(wildcards, input):
    args = []
    if CROSSED:
        args.append("--crossed " + " ".join(map(shlex.quote, input.crossed)))
    if DATASIZE_SOURCES:
        folders = analysis_speech()
        args.append(
            "--speech "
            + " ".join(shlex.quote(f"{key}={path}") for key, path in folders.items())
        )
    args += [
        f"--data-size {name} {size['train']} {size['val']}"
        for name, size in DATA_SIZES.items()
    ]
    return " ".join(args)


def analysis_item(name, caption, label):
    return report(
        f"results/analysis/{name}",
        caption=f"../report/{caption}.rst",
        category="Analysis",
        labels={"result": label},
    )


def analysis_outputs():
    """The analyze rule's outputs: the significance and TTS-score tables always, the
    crossed speakers' table with config `cross`, the data-size curve with a source of 3
    or more data sizes."""
    outputs = {
        "significance_md": "results/analysis/significance.md",
        "significance_csv": "results/analysis/significance.csv",
        "significance_html": analysis_item(
            "significance.html", "significance", "significance tests (table)"
        ),
        "tts_md": "results/analysis/tts_vs_gain.md",
        "tts_csv": "results/analysis/tts_vs_gain.csv",
        "tts_html": analysis_item(
            "tts_vs_gain.html", "tts_vs_gain", "TTS scores vs gain (table)"
        ),
        "tts_png": analysis_item(
            "tts_vs_gain.png", "tts_vs_gain_plot", "TTS scores vs gain (plot)"
        ),
    }
    if CROSSED:
        outputs["cross_md"] = "results/analysis/cross.md"
        outputs["cross_csv"] = "results/analysis/cross.csv"
        outputs["cross_html"] = analysis_item(
            "cross.html", "cross", "crossed speakers (table)"
        )
    if DATASIZE_SOURCES:
        outputs["datasize_csv"] = "results/analysis/datasize.csv"
        outputs["datasize_png"] = analysis_item(
            "datasize.png", "datasize", "SDRi vs minutes of speech (plot)"
        )
    return outputs


def analysis_targets():
    """The analysis files the `all` target asks for."""
    return [str(path) for path in analysis_outputs().values()]


# ---- rules/export.smk -----------------------------------------------------------------

TEAM = re.escape(EXPORT["team"]) if EXPORT else "(?!)"


def task2_model(wildcards):
    task2 = EXPORT["task2"]
    if task2["source"] == "generalist":
        return generalist_path(task2["model"])
    folders = [task2["model"], task2["source"], task2["size"], wildcards.speaker]
    return os.path.join("results", "finetune", *folders, "model.pt")
