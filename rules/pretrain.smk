# The generalist: a ConvTasNet pre-trained on the background pool of other
# voices and generic noises (or taken from a checkpoint, see config). Crops are
# read from disk as they are drawn; validation mixes with the pool's held-out
# noises where it has them (LibriSpeech + MUSAN). With generalist.pretrain_gpus N, the job
# asks for N GPUs and trains data-parallel on them, one process each, the recipe unchanged.


rule pretrain:
    input:
        **PRETRAIN_DATA,
    output:
        model="results/pretrain/{model}/model.pt",
        history="results/pretrain/{model}/training_log.csv",
        run_config="results/pretrain/{model}/config.yaml",
        loss_plot=report(
            "results/pretrain/{model}/loss.png",
            caption="../report/pretrain_loss.rst",
            category="Training curves",
            subcategory="pre-training the generalist",
            labels={"model": "ConvTasNet {model}"},
        ),
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        "benchmarks/pretrain/{model}.tsv"
    priority: 10
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    resources:
        gpu=GENERALIST["pretrain_gpus"],
    params:
        recipe=cli_args(config["generalist"].get("pretrain", {})),
        val_noises=lambda wildcards, input: path_args(
            input, {"val_noises": "val_noise_dir"}
        ),
        out_dir="results/pretrain/{model}",
        # a killed job started again continues from here (removed when done)
        resume="results/pretrain/{model}.resume.pt",
    shell:
        "python -m workflow_scripts.pretrain --speech-dir {input.speech}"
        " --noise-dir {input.noises} {params.val_noises} --model-size {wildcards.model}"
        " {params.recipe} --threads {threads} --processes {resources.gpu} --resume-file {params.resume}"
        " --out-dir {params.out_dir} 2> {log}"
