# The demo's small world, built from seeds: each demo speaker's enrollment
# clip, real ("gt") speech, noise set and test mixtures, and a background pool
# of other voices and noises on which the generalist is pre-trained. Speakers
# of the sheet's other groups get the same folders from rules/data.smk.


rule build_world:
    input:
        sentences=lambda wildcards: config["demo_world"]["sentences"],
    output:
        enrollment="data/speakers/{speaker}/enrollment.wav",
        sentences="data/speakers/{speaker}/sentences.txt",
        gt=directory("data/speakers/{speaker}/gt"),
        noises=directory("data/speakers/{speaker}/noises"),
        test=directory("data/speakers/{speaker}/test"),
        voice="data/speakers/{speaker}/voice.json",
    log:
        "logs/build_world/{speaker}.log",
    benchmark:
        "benchmarks/build_world/{speaker}.tsv"
    wildcard_constraints:
        speaker=_alternatives(DEMO_SPEAKERS),
    # before the scoring jobs: the fine-tunes' inputs (rules/finetune.smk)
    priority: 4
    conda:
        "../envs/tts-offline.yaml"
    threads: 1
    params:
        seed=lambda wildcards: int(speakers.loc[wildcards.speaker, "seed"]),
        num_sentences=NUM_UTTERANCES,
        world=demo_world_args,
    shell:
        "python -m workflow_scripts.build_world --speaker {wildcards.speaker}"
        " --seed {params.seed} --sentences {input.sentences}"
        " --num-sentences {params.num_sentences} {params.world}"
        " --out-dir data/speakers/{wildcards.speaker} 2> {log}"


rule build_background:
    input:
        sentences=lambda wildcards: config["demo_world"]["sentences"],
    output:
        speech=directory("data/background/speech"),
        noises=directory("data/background/noises"),
    log:
        "logs/build_background.log",
    benchmark:
        "benchmarks/build_background.tsv"
    priority: 10
    conda:
        "../envs/tts-offline.yaml"
    threads: 1
    params:
        background=lambda wildcards: cli_args(config["demo_world"]["background"]),
        base_voices=lambda wildcards: " ".join(config["demo_world"]["base_voices"]),
    shell:
        "python -m workflow_scripts.build_background {params.background}"
        " --base-voices {params.base_voices} --sentences {input.sentences}"
        " --out-dir data/background 2> {log}"
