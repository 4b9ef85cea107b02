# The generalist: a ConvTasNet pre-trained on the background pool of other
# voices and generic noises (or taken from a checkpoint, see config).


rule pretrain:
    input:
        speech="data/background/speech",
        noises="data/background/noises",
    output:
        model="results/pretrain/{model}/model.pt",
        history="results/pretrain/{model}/training_log.csv",
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    priority: 10
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        recipe=cli_args(config["generalist"]["pretrain"]),
        out_dir="results/pretrain/{model}",
    shell:
        "python -m workflow_scripts.pretrain --speech-dir {input.speech}"
        " --noise-dir {input.noises} --model-size {wildcards.model} {params.recipe}"
        " --threads {threads} --out-dir {params.out_dir} 2> {log}"
