# The demo's small world, built from seeds: each target speaker's enrollment
# clip, real ("gt") speech, noise set and test mixtures, and a background pool
# of other voices and noises on which the generalist is pre-trained.


rule build_world:
    input:
        sentences=config["demo_world"]["sentences"],
    output:
        enrollment="data/demo/{speaker}/enrollment.wav",
        sentences="data/demo/{speaker}/sentences.txt",
        gt=directory("data/demo/{speaker}/gt"),
        noises=directory("data/demo/{speaker}/noises"),
        test=directory("data/demo/{speaker}/test"),
        voice="data/demo/{speaker}/voice.json",
    log:
        "logs/build_world/{speaker}.log",
    benchmark:
        "benchmarks/build_world/{speaker}.tsv"
    conda:
        "../envs/tts-offline.yaml"
    threads: 1
    params:
        seed=lambda wildcards: int(speakers.loc[wildcards.speaker, "seed"]),
        num_sentences=NUM_UTTERANCES,
        world=cli_args(
            {
                key: config["demo_world"][key]
                for key in [
                    "num_test_utterances",
                    "num_noises",
                    "enrollment_seconds",
                    "base_voices",
                ]
            }
        ),
        test_snrs=" ".join(map(str, config["demo_world"]["test_snrs_db"])),
    shell:
        "python -m workflow_scripts.build_world --speaker {wildcards.speaker}"
        " --seed {params.seed} --sentences {input.sentences}"
        " --num-sentences {params.num_sentences} {params.world}"
        " --test-snrs {params.test_snrs} --out-dir data/demo/{wildcards.speaker}"
        " 2> {log}"


rule build_background:
    input:
        sentences=config["demo_world"]["sentences"],
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
        background=cli_args(config["demo_world"]["background"]),
        base_voices=" ".join(config["demo_world"]["base_voices"]),
    shell:
        "python -m workflow_scripts.build_background {params.background}"
        " --base-voices {params.base_voices} --sentences {input.sentences}"
        " --out-dir data/background 2> {log}"
