# Each speaker's 45 test mixtures, enhanced by the generalist and by every
# fine-tuned model, scored on full utterances: SDR, SDRi, eSTOI, PESQ-WB.


rule evaluate_generalist:
    output:
        table="results/eval/{model}/generalist/{speaker}.csv",
        summary="results/eval/{model}/generalist/{speaker}.json",
    input:
        model=generalist_checkpoint,
        test="data/demo/{speaker}/test",
    log:
        "logs/evaluate/{model}/generalist/{speaker}.log",
    benchmark:
        "benchmarks/evaluate/{model}/generalist/{speaker}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/pse-torch.yaml"
    shell:
        "python -m workflow_scripts.evaluate --model {input.model}"
        " --test-dir {input.test} --threads {threads}"
        " --out-csv {output.table} --out-summary {output.summary} 2> {log}"


rule evaluate_finetuned:
    output:
        table="results/eval/{model}/{source}/{size}/{speaker}.csv",
        summary="results/eval/{model}/{source}/{size}/{speaker}.json",
    input:
        model="results/finetune/{model}/{source}/{size}/{speaker}/model.pt",
        test="data/demo/{speaker}/test",
    log:
        "logs/evaluate/{model}/{source}/{size}/{speaker}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{source}/{size}/{speaker}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/pse-torch.yaml"
    shell:
        "python -m workflow_scripts.evaluate --model {input.model}"
        " --test-dir {input.test} --threads {threads}"
        " --out-csv {output.table} --out-summary {output.summary} 2> {log}"
