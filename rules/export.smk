# The challenge's submission folders, for the speakers with a challenge_id:
# Track 1, each speaker's 50 given sentences as synthesized by one TTS system
# (the first 50 utterances of its speech folder); Track 2, the challenge's 45
# test mixtures of each speaker enhanced by one model. Config `export` picks
# the team name, the TTS system and the model.


rule export_task1:
    input:
        speech=lambda wildcards: f"results/speech/{EXPORT['task1']['tts']}/{wildcards.speaker}",
        sentences="data/speakers/{speaker}/sentences.txt",
    output:
        directory("results/export/{team}_task1/{speaker}"),
    log:
        "logs/export/{team}_task1/{speaker}.log",
    wildcard_constraints:
        speaker=_alternatives(CHALLENGE_SPEAKERS),
        team=TEAM,
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        num_utterances=TRACK1_UTTERANCES,
    shell:
        "python -m workflow_scripts.export_task1 --speaker {wildcards.speaker}"
        " --speech-dir {input.speech} --sentences {input.sentences}"
        " --num-utterances {params.num_utterances} --out-dir {output} 2> {log}"


rule export_task2:
    input:
        model=task2_model,
        mixtures="data/speakers/{speaker}/challenge_test",
    output:
        directory("results/export/{team}_task2/{speaker}"),
    log:
        "logs/export/{team}_task2/{speaker}.log",
    wildcard_constraints:
        speaker=_alternatives(CHALLENGE_SPEAKERS),
        team=TEAM,
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m workflow_scripts.export_task2 --speaker {wildcards.speaker}"
        " --model {input.model} --test-dir {input.mixtures} --out-dir {output} 2> {log}"


rule export_zip:
    input:
        lambda wildcards: [
            f"results/export/{EXPORT['team']}_task{wildcards.task}/{speaker}"
            for speaker in CHALLENGE_SPEAKERS
        ],
    output:
        "results/export/{team}_task{task}.zip",
    log:
        "logs/export/{team}_task{task}_zip.log",
    wildcard_constraints:
        task="1|2",
        team=TEAM,
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    shell:
        "python -m workflow_scripts.export_zip --folders {input} --out {output} 2> {log}"
