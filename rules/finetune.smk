# Personalization: the generalist fine-tuned on one speaker's speech (real or
# synthesized) mixed on the fly with that speaker's own noises.
#
# config finetune_stacking.by: none (the default) fine-tunes each (model, source,
# size, speaker) in a job of its own. by: speaker fine-tunes all of a speaker's
# conditions (every source x data size) in one job per (model, speaker), as one
# computation (workflow_scripts/training/stacked_loop.py; its speed: bench/RESULTS.md,
# "Fine-tuning throughput"),
# into the same folders. The trade-off: a change to one condition (its speech, its
# data size) reruns the speaker's whole stack; adding a speaker still runs only its
# own jobs.


if config["finetune_stacking"]["by"] == "none":

    rule finetune:
        input:
            generalist=generalist_checkpoint,
            speech=speech_dir,
            noises="data/speakers/{speaker}/noises",
        output:
            model="results/finetune/{model}/{source}/{size}/{speaker}/model.pt",
            history="results/finetune/{model}/{source}/{size}/{speaker}/training_log.csv",
            run_config="results/finetune/{model}/{source}/{size}/{speaker}/config.yaml",
            loss_plot=finetune_loss_plot(),
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

else:
    # a stack fills much of a GPU by itself and claims GENDA_STACK_SLOTS of its GENDA_JOBS_PER_GPU
    # slots (by default all but one where there are three or more: runtime/gpu.py), so it counts as
    # that many units of the gpu resource (profiles/default); the slots it leaves run other GPU
    # jobs beside it
    from workflow_scripts.runtime.gpu import stack_slots_from_env

    for stack_rule, (stack_speakers, stack_conditions) in finetune_stacks().items():

        rule:
            name:
                stack_rule
            input:
                generalist=generalist_checkpoint,
                speech=stacked_speech_dirs,
                noises="data/speakers/{speaker}/noises",
            output:
                **stacked_finetune_outputs(stack_conditions),
            log:
                "logs/finetune_stacked/{model}/{speaker}.log",
            benchmark:
                "benchmarks/finetune_stacked/{model}/{speaker}.tsv"
            wildcard_constraints:
                speaker=_alternatives(stack_speakers),
            priority: 5
            conda:
                "../envs/pse-torch.yaml"
            threads: 1
            resources:
                gpu=stack_slots_from_env(),
            params:
                members=stacked_member_args,
                recipe=cli_args(config["finetune"]),
                precision=config["finetune_stacking"]["precision"],
                batches=config["finetune_stacking"]["batches"],
                # a killed job started again continues from here (removed when done)
                resume="results/finetune/{model}/{speaker}.stack.resume.pt",
            shell:
                "python -m workflow_scripts.finetune_stacked --init {input.generalist}"
                " --noise-dir {input.noises} {params.members} {params.recipe}"
                " --precision {params.precision} --batches {params.batches}"
                " --threads {threads} --gpu-slots {resources.gpu}"
                " --resume-file {params.resume} 2> {log}"
