# Personalization: the generalist fine-tuned on one speaker's speech (real or
# synthesized) mixed on the fly with that speaker's own noises.


rule finetune:
    input:
        generalist=generalist_checkpoint,
        speech=speech_dir,
        noises="data/speakers/{speaker}/noises",
    output:
        model="results/finetune/{model}/{source}/{size}/{speaker}/model.pt",
        history="results/finetune/{model}/{source}/{size}/{speaker}/training_log.csv",
        loss_plot=report(
            "results/finetune/{model}/{source}/{size}/{speaker}/loss.png",
            category="Fine-tuning",
            subcategory="{model} {source} {size}",
            labels={
                "speaker": "{speaker}",
                "source": "{source}",
                "size": "{size}",
                "model": "{model}",
            },
        ),
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
        # a killed job started again continues from here (removed when done)
        resume="results/finetune/{model}/{source}/{size}/{speaker}.resume.pt",
    shell:
        "python -m workflow_scripts.finetune --init {input.generalist}"
        " --speech-dir {input.speech} --num-train {params.num_train}"
        " --num-val {params.num_val} --noise-dir {input.noises} {params.recipe}"
        " --threads {threads} --resume-file {params.resume}"
        " --out-dir {params.out_dir} 2> {log}"
