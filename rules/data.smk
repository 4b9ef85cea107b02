# Real and virtual speakers: external data fetched once into resources/, then
# each speaker's folder data/speakers/{speaker}/ in the layout the demo world
# has (enrollment.wav, sentences.txt, noises/, test/, gt/ where there is real
# speech), plus the challenge's own test mixtures for the Track 2 export; the
# challenge's generalist checkpoints; and the LibriSpeech pre-training pool.


# Downloads run where snakemake runs (cluster nodes often have no internet).
localrules:
    download,


rule download:
    output:
        directory("resources/{resource}"),
    log:
        "logs/download/{resource}.log",
    wildcard_constraints:
        resource=_alternatives(RESOURCES),
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        args=download_args,
    shell:
        "python -m workflow_scripts.download --name {wildcards.resource} {params.args}"
        " --archive-dir resources/archives --out-dir {output} 2> {log}"


rule prepare_speaker:
    input:
        unpack(speaker_inputs),
    output:
        enrollment="data/speakers/{speaker}/enrollment.wav",
        sentences="data/speakers/{speaker}/sentences.txt",
        noises=directory("data/speakers/{speaker}/noises"),
        test=directory("data/speakers/{speaker}/test"),
        record="data/speakers/{speaker}/speaker.json",
    log:
        "logs/prepare_speaker/{speaker}.log",
    benchmark:
        "benchmarks/prepare_speaker/{speaker}.tsv"
    wildcard_constraints:
        speaker=_alternatives(FILE_SPEAKERS),
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        args=speaker_args,
        test=SPEAKER_DATA_ARGS,
        min_enrollment_s=config["enrollment"]["min_seconds"],
    shell:
        "python -m workflow_scripts.prepare_speaker --speaker {wildcards.speaker}"
        " {params.args} {params.test} --min-enrollment-s {params.min_enrollment_s}"
        " --out-dir data/speakers/{wildcards.speaker}"
        " 2> {log}"


rule prepare_gt:
    input:
        unpack(gt_inputs),
    output:
        directory("data/speakers/{speaker}/gt"),
    log:
        "logs/prepare_gt/{speaker}.log",
    benchmark:
        "benchmarks/prepare_gt/{speaker}.tsv"
    wildcard_constraints:
        speaker=_alternatives([s for s in GT_SPEAKERS if s in FILE_SPEAKERS]),
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        args=gt_args,
        num_utterances=max(GT_UTTERANCES, 1),
    shell:
        "python -m workflow_scripts.prepare_gt --speaker {wildcards.speaker}"
        " --record {input.record} --sentences {input.sentences} {params.args}"
        " --num-utterances {params.num_utterances} --out-dir {output} 2> {log}"


rule prepare_challenge_test:
    input:
        challenge=lambda wildcards: resource_dir(
            CHALLENGE, "the challenge test mixtures"
        ),
    output:
        directory("data/speakers/{speaker}/challenge_test"),
    log:
        "logs/prepare_challenge_test/{speaker}.log",
    wildcard_constraints:
        speaker=_alternatives(CHALLENGE_SPEAKERS),
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        challenge_id=lambda wildcards: speaker_row(wildcards.speaker)["challenge_id"],
    shell:
        "python -m workflow_scripts.prepare_challenge_test --speaker {wildcards.speaker}"
        " --challenge-dir {input.challenge} --challenge-id {params.challenge_id}"
        " --out-dir {output} 2> {log}"


rule prepare_generalist:
    input:
        challenge=lambda wildcards: resource_dir(
            CHALLENGE, "generalist.source challenge"
        ),
    output:
        "data/generalists/challenge/{model}.pt",
    log:
        "logs/prepare_generalist/{model}.log",
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    shell:
        "python -m workflow_scripts.prepare_generalist --challenge-dir {input.challenge}"
        " --model-size {wildcards.model} --out {output} 2> {log}"


rule prepare_pretrain_pool:
    input:
        unpack(pretrain_pool_inputs),
    output:
        speech=directory("data/pretrain_pool/speech"),
        noises=directory("data/pretrain_pool/noises"),
        val_noises=directory("data/pretrain_pool/val_noises"),
    log:
        "logs/prepare_pretrain_pool.log",
    benchmark:
        "benchmarks/prepare_pretrain_pool.tsv"
    priority: 10
    conda:
        "../envs/pse-torch.yaml"
    threads: 4
    params:
        pool=cli_args(
            {
                key: PRETRAIN_POOL[key]
                for key in ["held_out_speakers", "num_val_noises"]
                if key in PRETRAIN_POOL
            }
        ),
    shell:
        "python -m workflow_scripts.prepare_pretrain_pool --librispeech-dirs {input.speech}"
        " --musan-dir {input.noises} {params.pool} --workers {threads}"
        " --out-dir data/pretrain_pool 2> {log}"
