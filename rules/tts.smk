# Zero-shot TTS: each system sees only the speaker's enrollment clip. The
# voice conditioning is computed once per (system, speaker) and stored; the
# synthesis job then renders the largest data size's sentences once.
# Model weights come from the hub, or from MODEL_DIR where download_models put
# them; XTTS-v2 jobs run only once the user has accepted its license in config.


def license_env(wildcards):
    """COQUI_TOS_AGREED=1 for XTTS jobs when config accepts the CPML license."""
    backend = config["tts"][wildcards.tts]["backend"]
    if backend == "xtts" and config.get("accept_coqui_license", False):
        return "COQUI_TOS_AGREED=1 "
    return ""


rule clone_voice:
    input:
        enrollment="data/demo/{speaker}/enrollment.wav",
    output:
        "results/voices/{tts}/{speaker}.pt",
    log:
        "logs/clone_voice/{tts}/{speaker}.log",
    benchmark:
        "benchmarks/clone_voice/{tts}/{speaker}.tsv"
    conda:
        "../envs/tts-offline.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        backend=lambda wildcards: config["tts"][wildcards.tts]["backend"],
        options=lambda wildcards: json.dumps(
            config["tts"][wildcards.tts].get("options", {})
        ),
        min_enrollment_s=config.get("enrollment", {}).get("min_seconds", 2.0),
        model_dir=MODEL_DIR,
        license=license_env,
    shell:
        "{params.license}python -m workflow_scripts.clone_voice --backend {params.backend}"
        " --options-json {params.options:q} --enrollment {input.enrollment}"
        " --min-enrollment-s {params.min_enrollment_s} --model-dir {params.model_dir}"
        " --out {output} 2> {log}"


rule synthesize:
    input:
        voice="results/voices/{tts}/{speaker}.pt",
        sentences="data/demo/{speaker}/sentences.txt",
    output:
        directory("results/speech/{tts}/{speaker}"),
    log:
        "logs/synthesize/{tts}/{speaker}.log",
    benchmark:
        "benchmarks/synthesize/{tts}/{speaker}.tsv"
    conda:
        "../envs/tts-offline.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        backend=lambda wildcards: config["tts"][wildcards.tts]["backend"],
        options=lambda wildcards: json.dumps(
            config["tts"][wildcards.tts].get("options", {})
        ),
        seed=lambda wildcards: config["tts"][wildcards.tts].get("seed", 0),
        num_utterances=NUM_UTTERANCES,
        model_dir=MODEL_DIR,
        license=license_env,
    shell:
        "{params.license}python -m workflow_scripts.synthesize --backend {params.backend}"
        " --options-json {params.options:q} --voice {input.voice}"
        " --sentences {input.sentences} --num-utterances {params.num_utterances}"
        " --speaker {wildcards.speaker} --tts {wildcards.tts} --seed {params.seed}"
        " --model-dir {params.model_dir} --out-dir {output} 2> {log}"


rule score_tts:
    input:
        enrollment="data/demo/{speaker}/enrollment.wav",
        speech=speech_dir,
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
    params:
        asr=config["tts_scoring"]["asr"],
        whisper_model=config["tts_scoring"].get("whisper_model", "large-v3"),
        model_dir=MODEL_DIR,
        max_utterances=config["tts_scoring"].get("max_utterances", 0),
    shell:
        "python -m workflow_scripts.score_tts --enrollment {input.enrollment}"
        " --speech-dir {input.speech} --asr {params.asr}"
        " --whisper-model {params.whisper_model} --model-dir {params.model_dir}"
        " --max-utterances {params.max_utterances}"
        " --out-csv {output.table} --out-summary {output.summary} 2> {log}"
