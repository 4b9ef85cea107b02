# Each speaker's test mixtures, enhanced by the generalist and by every
# fine-tuned model, scored on full utterances: SDR, SDRi, eSTOI, PESQ-WB
# against the clean reference, and the scores that need none (config
# evaluation: DNSMOS SIG/BAK/OVRL, DistillMOS, and the WER where the test set
# has the text). The unprocessed mixtures are scored once per speaker. Mixtures
# without a clean reference (the virtual speakers') are enhanced, their
# reference metrics are recorded as not applicable, and they get the others.
#
# config evaluation.by: none evaluates each model in a job of its own; by: speaker
# evaluates the generalist and every fine-tuned model of a (model size, speaker) in one
# job (the test set read, the predictors loaded and the job started once), into the
# same files with the same scores. The trade-off: a change to one condition reruns the
# speaker's whole evaluation; adding a speaker still runs only its own jobs.


rule score_mixtures:
    input:
        test="data/speakers/{speaker}/test",
        models=evaluation_models(),
    output:
        "results/eval/mixtures/{speaker}.csv",
    log:
        "logs/score_mixtures/{speaker}.log",
    benchmark:
        "benchmarks/score_mixtures/{speaker}.tsv"
    # the evaluations' input, before the TTS scoring
    priority: 3
    conda:
        "../envs/tts-scoring.yaml"
    threads: 1
    resources:
        gpu=MIXTURE_SCORING_GPUS,
    params:
        nonintrusive=nonintrusive_args(),
        device="auto" if MIXTURE_SCORING_GPUS else "cpu",
    shell:
        "python -m workflow_scripts.score_mixtures --test-dir {input.test}"
        " {params.nonintrusive} --device {params.device}"
        " --out-csv {output} 2> {log}"


if EVALUATION["by"] == "none":

    rule evaluate_generalist:
        input:
            model=generalist_checkpoint,
            test="data/speakers/{speaker}/test",
            input_scores=mixture_scores,
            models=evaluation_models(),
        output:
            table="results/eval/{model}/generalist/{speaker}.csv",
            summary="results/eval/{model}/generalist/{speaker}.json",
        log:
            "logs/evaluate/{model}/generalist/{speaker}.log",
        benchmark:
            "benchmarks/evaluate/{model}/generalist/{speaker}.tsv"
        conda:
            "../envs/tts-scoring.yaml"
        threads: 1
        resources:
            gpu=1,
        params:
            input_scores=input_scores_arg,
            nonintrusive=nonintrusive_args(),
        shell:
            "python -m workflow_scripts.evaluate --model {input.model}"
            " --test-dir {input.test} {params.input_scores} {params.nonintrusive}"
            " --workers {threads}"
            " --out-csv {output.table} --out-summary {output.summary} 2> {log}"

    rule evaluate_finetuned:
        input:
            model="results/finetune/{model}/{source}/{size}/{speaker}/model.pt",
            test="data/speakers/{speaker}/test",
            input_scores=mixture_scores,
            models=evaluation_models(),
        output:
            table="results/eval/{model}/{source}/{size}/{speaker}.csv",
            summary="results/eval/{model}/{source}/{size}/{speaker}.json",
        log:
            "logs/evaluate/{model}/{source}/{size}/{speaker}.log",
        benchmark:
            "benchmarks/evaluate/{model}/{source}/{size}/{speaker}.tsv"
        conda:
            "../envs/tts-scoring.yaml"
        threads: 1
        resources:
            gpu=1,
        params:
            input_scores=input_scores_arg,
            nonintrusive=nonintrusive_args(),
        shell:
            "python -m workflow_scripts.evaluate --model {input.model}"
            " --test-dir {input.test} {params.input_scores} {params.nonintrusive}"
            " --workers {threads}"
            " --out-csv {output.table} --out-summary {output.summary} 2> {log}"

else:

    for eval_rule, (eval_speakers, eval_conditions) in evaluation_stacks().items():

        rule:
            name:
                eval_rule
            input:
                generalist=generalist_checkpoint,
                checkpoints=stacked_eval_checkpoints,
                test="data/speakers/{speaker}/test",
                input_scores=mixture_scores,
                models=evaluation_models(),
            output:
                **stacked_eval_outputs(eval_conditions),
            log:
                "logs/evaluate_stacked/{model}/{speaker}.log",
            benchmark:
                "benchmarks/evaluate_stacked/{model}/{speaker}.tsv"
            wildcard_constraints:
                speaker=_alternatives(eval_speakers),
            conda:
                "../envs/tts-scoring.yaml"
            threads: 1
            resources:
                gpu=1,
            params:
                members=stacked_eval_member_args,
                input_scores=input_scores_arg,
                nonintrusive=nonintrusive_args(),
            shell:
                "python -m workflow_scripts.evaluate --test-dir {input.test} {params.members}"
                " {params.input_scores} {params.nonintrusive} --workers {threads} 2> {log}"
