# The generalist: a ConvTasNet pre-trained on the background pool of other
# voices and generic noises (or taken from a checkpoint, see config).


rule pretrain:
    output:
        model="results/pretrain/{model}/model.pt",
        history="results/pretrain/{model}/training_log.csv",
    input:
        speech="data/background/speech",
        noises="data/background/noises",
    params:
        recipe=cli_args(config["generalist"]["pretrain"]),
        out_dir="results/pretrain/{model}",
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/pse-torch.yaml"
    shell:
        "python -m workflow_scripts.pretrain --speech-dir {input.speech}"
        " --noise-dir {input.noises} --model-size {wildcards.model} {params.recipe}"
        " --threads {threads} --out-dir {params.out_dir} 2> {log}"
