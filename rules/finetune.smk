# Personalization: the generalist fine-tuned on one speaker's speech (real or
# synthesized) mixed on the fly with that speaker's own noises.


rule finetune:
    input:
        generalist=generalist_checkpoint,
        speech=speech_dir,
        noises="data/demo/{speaker}/noises",
    output:
        model="results/finetune/{model}/{source}/{size}/{speaker}/model.pt",
        history="results/finetune/{model}/{source}/{size}/{speaker}/training_log.csv",
    log:
        "logs/finetune/{model}/{source}/{size}/{speaker}.log",
    benchmark:
        "benchmarks/finetune/{model}/{source}/{size}/{speaker}.tsv"
    priority: 5
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        num_train=lambda wildcards: DATA_SIZES[wildcards.size]["train"],
        num_val=lambda wildcards: DATA_SIZES[wildcards.size]["val"],
        recipe=cli_args(config["finetune"]),
        out_dir="results/finetune/{model}/{source}/{size}/{speaker}",
    shell:
        "python -m workflow_scripts.finetune --init {input.generalist}"
        " --speech-dir {input.speech} --num-train {params.num_train}"
        " --num-val {params.num_val} --noise-dir {input.noises} {params.recipe}"
        " --threads {threads} --out-dir {params.out_dir} 2> {log}"
