# The paper's open questions, answered with the uncertainty a reviewer expects:
# significance of every condition against the generalist and gt; which TTS score
# predicts the gain (Q1); whether a model personalized on one speaker serves another
# (Q2, config `cross`: an existing fine-tuned model evaluated on another speaker's test
# set, no retraining); how SDRi grows with the minutes of training speech (Q3, when a
# source has 3 or more data sizes).


rule evaluate_crossed:
    input:
        model="results/finetune/{model}/{source}/{size}/{train}/model.pt",
        test="data/speakers/{speaker}/test",
        input_scores=mixture_scores,
        models=evaluation_models(),
    output:
        table="results/eval_crossed/{model}/{source}/{size}/{train}/{speaker}.csv",
        summary="results/eval_crossed/{model}/{source}/{size}/{train}/{speaker}.json",
    log:
        "logs/evaluate_crossed/{model}/{source}/{size}/{train}/{speaker}.log",
    benchmark:
        "benchmarks/evaluate_crossed/{model}/{source}/{size}/{train}/{speaker}.tsv"
    wildcard_constraints:
        train=_alternatives(speakers.index),
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


rule analyze:
    input:
        eval_tables=list(eval_tables().values()),
        tts_scores=list(tts_score_summaries().values()),
        crossed=crossed_tables(),
        speech=list(analysis_speech().values()),
    output:
        **analysis_outputs(),
    log:
        "logs/analyze.log",
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        optional=analysis_args,
    shell:
        "python -m workflow_scripts.analyze --eval {input.eval_tables}"
        " --tts-scores {input.tts_scores} {params.optional}"
        " --out-dir results/analysis 2> {log}"
