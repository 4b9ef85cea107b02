# Zero-shot TTS: each system sees only the speaker's enrollment clip. The
# voice conditioning is computed once per (system, speaker) and stored; the
# synthesis job then renders the largest data size's sentences once.
# Model weights come from the hub, or from MODEL_DIR where download_models put
# them; XTTS-v2 and F5-TTS jobs run only once the user has accepted their weights'
# license in config. F5-TTS also reads what the enrollment clip says: the speaker
# sheet's enrollment_text, else the transcript of the scoring ASR.
# A system of backend `folder` brings speech made elsewhere: import_speech turns
# each speaker's files into the same speech folder, with no model and no voice.


# Downloads run where snakemake runs (the login node has internet; compute nodes may not).
localrules:
    download_models,


rule download_models:
    output:
        f"{MODEL_DIR}/manifests/{{what}}.json",
    log:
        "logs/download_models/{what}.log",
    benchmark:
        "benchmarks/download_models/{what}.tsv"
    conda:
        "../envs/model-download.yaml"
    threads: 1
    params:
        model_dir=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        models=lambda wildcards: json.dumps(models_needed(wildcards.what)),
        license="--accept-coqui-license" if "coqui_cpml" in ACCEPTED_LICENSES else "",
    shell:
        "python -m workflow_scripts.download_models --model-dir {params.model_dir}"
        " --models-json {params.models:q} {params.license} --manifest {output}"
        " 2> {log}"


rule clone_voice:
    input:
        enrollment="data/speakers/{speaker}/enrollment.wav",
        models=lambda wildcards: model_manifest(wildcards.tts),
    output:
        "results/voices/{tts}/{speaker}.pt",
    log:
        "logs/clone_voice/{tts}/{speaker}.log",
    benchmark:
        "benchmarks/clone_voice/{tts}/{speaker}.tsv"
    wildcard_constraints:
        tts=_alternatives(SYNTHESIZED_SYSTEMS),
    # before the scoring jobs: the fine-tunes' inputs (rules/finetune.smk)
    priority: 4
    conda:
        tts_conda_env
    threads: 1
    resources:
        gpu=1,
    params:
        backend=lambda wildcards: config["tts"][wildcards.tts]["backend"],
        options=lambda wildcards: json.dumps(config["tts"][wildcards.tts]["options"]),
        min_enrollment_s=config["enrollment"]["min_seconds"],
        model_dir=MODEL_DIR,
        license=license_env,
        transcript=enrollment_text_args,
    shell:
        "{params.license}python -m workflow_scripts.clone_voice --backend {params.backend}"
        " --options-json {params.options:q} --enrollment {input.enrollment}"
        " --min-enrollment-s {params.min_enrollment_s} --model-dir {params.model_dir}"
        " {params.transcript} --out {output} 2> {log}"


rule synthesize:
    input:
        voice="results/voices/{tts}/{speaker}.pt",
        sentences="data/speakers/{speaker}/sentences.txt",
        models=lambda wildcards: model_manifest(wildcards.tts),
    output:
        directory("results/speech/{tts}/{speaker}"),
    log:
        "logs/synthesize/{tts}/{speaker}.log",
    benchmark:
        "benchmarks/synthesize/{tts}/{speaker}.tsv"
    wildcard_constraints:
        tts=_alternatives(SYNTHESIZED_SYSTEMS),
    # before the scoring jobs: the fine-tunes' inputs (rules/finetune.smk)
    priority: 4
    conda:
        tts_conda_env
    threads: 1
    resources:
        gpu=1,
    params:
        backend=lambda wildcards: config["tts"][wildcards.tts]["backend"],
        options=lambda wildcards: json.dumps(config["tts"][wildcards.tts]["options"]),
        seed=lambda wildcards: config["tts"][wildcards.tts]["seed"],
        num_utterances=NUM_UTTERANCES,
        batch_size=lambda wildcards: config["tts"][wildcards.tts]["batch_size"],
        model_dir=MODEL_DIR,
        license=license_env,
    shell:
        "{params.license}python -m workflow_scripts.synthesize --backend {params.backend}"
        " --options-json {params.options:q} --voice {input.voice}"
        " --sentences {input.sentences} --num-utterances {params.num_utterances}"
        " --speaker {wildcards.speaker} --tts {wildcards.tts} --seed {params.seed}"
        " --batch-size {params.batch_size} --model-dir {params.model_dir}"
        " --out-dir {output} 2> {log}"


rule import_speech:
    input:
        unpack(imported_speech_inputs),
    output:
        directory("results/speech/{tts}/{speaker}"),
    log:
        "logs/import_speech/{tts}/{speaker}.log",
    benchmark:
        "benchmarks/import_speech/{tts}/{speaker}.tsv"
    wildcard_constraints:
        tts=_alternatives(FOLDER_SYSTEMS),
    # before the scoring jobs: the fine-tunes' inputs (rules/finetune.smk)
    priority: 4
    conda:
        tts_conda_env
    threads: 1
    params:
        args=import_speech_args,
    shell:
        "python -m workflow_scripts.import_speech {params.args} --speaker {wildcards.speaker}"
        " --sentences {input.sentences} --tts {wildcards.tts} --out-dir {output} 2> {log}"


rule score_tts:
    input:
        enrollment="data/speakers/{speaker}/enrollment.wav",
        speech=speech_dir,
        models=model_manifest("scoring"),
        cpu_scores=tts_cpu_scores,
    output:
        table="results/tts_scores/{source}/{speaker}.csv",
        summary="results/tts_scores/{source}/{speaker}.json",
    log:
        "logs/score_tts/{source}/{speaker}.log",
    benchmark:
        "benchmarks/score_tts/{source}/{speaker}.tsv"
    conda:
        "../envs/tts-scoring.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        asr=config["tts_scoring"]["asr"],
        whisper_model=config["tts_scoring"]["whisper_model"],
        whisper_fallback=(
            "--whisper-temperature-fallback"
            if config["tts_scoring"]["whisper_temperature_fallback"]
            else "--no-whisper-temperature-fallback"
        ),
        secs_xvector_model=config["tts_scoring"]["secs_xvector_model"],
        utmos_model=config["tts_scoring"]["utmos_model"],
        mos=" ".join(config["tts_scoring"]["mos"]),
        model_dir=MODEL_DIR,
        max_utterances=config["tts_scoring"]["max_utterances"],
        cpu_scores=lambda wildcards, input: (
            f"--cpu-scores {input.cpu_scores}" if input.cpu_scores else ""
        ),
    shell:
        "python -m workflow_scripts.score_tts --enrollment {input.enrollment}"
        " --speech-dir {input.speech} --asr {params.asr}"
        " --whisper-model {params.whisper_model} {params.whisper_fallback}"
        " --secs-xvector-model {params.secs_xvector_model:q}"
        " --utmos-model {params.utmos_model:q} --mos {params.mos}"
        " --model-dir {params.model_dir} --max-utterances {params.max_utterances}"
        " {params.cpu_scores} --out-csv {output.table} --out-summary {output.summary} 2> {log}"


# tts_scoring.cpu_job: Resemblyzer SECS and DNSMOS of a speech folder in a CPU job of their own,
# read by its score_tts job, which then holds its GPU slot only for its device models
rule score_tts_cpu:
    input:
        enrollment="data/speakers/{speaker}/enrollment.wav",
        speech=speech_dir,
    output:
        "results/tts_scores/{source}/{speaker}.cpu.json",
    log:
        "logs/score_tts_cpu/{source}/{speaker}.log",
    benchmark:
        "benchmarks/score_tts_cpu/{source}/{speaker}.tsv"
    conda:
        "../envs/tts-scoring.yaml"
    threads: 1
    params:
        mos=" ".join(config["tts_scoring"]["mos"]),
        max_utterances=config["tts_scoring"]["max_utterances"],
    shell:
        "python -m workflow_scripts.score_tts_cpu --enrollment {input.enrollment}"
        " --speech-dir {input.speech} --mos {params.mos}"
        " --max-utterances {params.max_utterances} --threads {threads}"
        " --out {output} 2> {log}"
