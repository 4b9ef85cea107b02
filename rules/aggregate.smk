# The paper's table: mean per speaker, then over speakers, for the generalist,
# gt and every TTS system at every data size and model size, for all speakers
# and for real and virtual speakers apart, as the challenge reported; plus plots.
# Each table is written as markdown (to paste) and as an HTML page (the report's).


rule aggregate:
    input:
        eval_tables=list(eval_tables().values()),
        tts_scores=list(tts_score_summaries().values()),
    output:
        summary_md="results/summary.md",
        summary_html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="PSE results",
            labels={"result": "results table"},
        ),
        summary_csv="results/summary.csv",
        per_speaker="results/summary_per_speaker.csv",
        tts_md="results/tts_summary.md",
        tts_html=report(
            "results/tts_summary.html",
            caption="../report/tts_summary.rst",
            category="TTS quality",
            labels={"result": "TTS scores table"},
        ),
        sdri_plot=report(
            "results/plots/sdri_by_condition.png",
            caption="../report/sdri_by_condition.rst",
            category="PSE results",
            labels={"result": "SDRi by condition (plot)"},
        ),
        secs_plot=report(
            "results/plots/secs_vs_sdri.png",
            caption="../report/secs_vs_sdri.rst",
            category="Analysis",
            labels={"result": "SECS vs SDRi gain (plot)"},
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/pse-torch.yaml"
    threads: 1
    params:
        groups=" ".join(f"{s}={group}" for s, group in speakers.group.items()),
    shell:
        "python -m workflow_scripts.aggregate --eval {input.eval_tables}"
        " --tts-scores {input.tts_scores} --speaker-groups {params.groups}"
        " --out-dir results 2> {log}"
