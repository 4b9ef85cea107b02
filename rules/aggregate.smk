# The paper's table: mean per speaker, then over speakers, for the generalist,
# gt and every TTS system at every data size and model size, for all speakers
# and for real and virtual speakers apart, as the challenge reported; plus plots.


rule aggregate:
    input:
        eval_tables=list(eval_tables().values()),
        tts_scores=list(tts_score_summaries().values()),
    output:
        summary_md=report(
            "results/summary.md", category="Results", labels={"table": "summary"}
        ),
        summary_csv="results/summary.csv",
        per_speaker="results/summary_per_speaker.csv",
        tts_md=report(
            "results/tts_summary.md", category="TTS", labels={"table": "tts scores"}
        ),
        sdri_plot=report(
            "results/plots/sdri_by_condition.png",
            category="Results",
            labels={"plot": "SDRi by condition"},
        ),
        secs_plot=report(
            "results/plots/secs_vs_sdri.png",
            category="TTS",
            labels={"plot": "SECS vs SDRi"},
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        eval_tables=labelled_args(eval_tables()),
        tts_scores=labelled_args(tts_score_summaries()),
        groups=" ".join(f"{s}={group}" for s, group in speakers.group.items()),
    shell:
        "python -m workflow_scripts.aggregate --eval {params.eval_tables}"
        " --tts-scores {params.tts_scores} --speaker-groups {params.groups}"
        " --out-dir results 2> {log}"
