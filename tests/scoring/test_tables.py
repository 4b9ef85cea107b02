"""The results tables and plots as a reader sees them: units, footnotes, attributable points."""

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.scoring.plots import plot_secs_vs_sdri, plot_sdri_by_condition
from workflow_scripts.scoring.results import eval_table_labels, summarize_groups, tts_score_labels
from workflow_scripts.scoring.tables import markdown_to_html, summary_markdown

SPEAKERS = {"r1": "real", "r2": "real", "v1": "virtual"}


def speaker_means() -> pd.DataFrame:
    rows = []
    for speaker, group in SPEAKERS.items():
        real = group == "real"
        for source, size, gain in (("generalist", "-", 0.0), ("gt", "2min", 1.0), ("clone", "2min", 0.5),
                                   ("clone", "4min", 0.6)):
            if source == "gt" and not real:
                continue
            sdri = 5.0 + gain if real else np.nan
            rows.append({"model": "tiny", "source": source, "size": size, "speaker": speaker, "sdri_db": sdri,
                         "sdr_db": sdri, "estoi": 0.8 if real else np.nan, "pesq": 2.0 if real else np.nan,
                         "sdr_in_db": 0.0 if real else np.nan, "estoi_in": 0.6 if real else np.nan,
                         "pesq_in": 1.5 if real else np.nan, "n_utterances": 9, "n_missing": 0, "group": group})
    return pd.DataFrame(rows)


def tts_scores() -> pd.DataFrame:
    rows = []
    for speaker in SPEAKERS:
        for source in ("gt", "clone"):
            if source == "gt" and SPEAKERS[speaker] == "virtual":
                continue
            rows.append({"source": source, "speaker": speaker, "n_utterances": 8,
                         "secs": 0.8, "secs_reason": "", "secs_xvector": np.nan,
                         "secs_xvector_reason": "x-vector weights not available offline",
                         "wer": 0.125, "wer_reason": "", "asr": "pocketsphinx-en-us"})
    return pd.DataFrame(rows)


@pytest.fixture
def summary_md():
    means = speaker_means()
    summary = summarize_groups(means, tts_scores(), SPEAKERS)
    return summary_markdown(summary, tts_scores())


def rows_of(markdown: str, condition: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith(f"| {condition} |")]


def test_summary_names_units_and_puts_wer_in_percent(summary_md):
    header = next(line for line in summary_md.splitlines() if line.startswith("| Condition |"))
    for title in ("SDRi (dB)", "SDRi sd (dB)", "SDR (dB)", "eSTOI (0-1)", "PESQ WB (1-4.6)",
                  "SECS resemblyzer (cos)", "WER (%)"):
        assert title in header
    # the organisers' SECS first; here it could not be computed: n/a and the reason once
    assert header.index("SECS x-vector (cos)") < header.index("SECS resemblyzer (cos)")
    clone = rows_of(summary_md, "clone 2min")[0]
    assert clone[6:9] == ["n/a¹", "0.800", "12.5"]  # WER 0.125 as percent
    assert "- ¹ SECS x-vector: x-vector weights not available offline" in summary_md
    assert summary_md.count("x-vector weights not available offline") == 1


def test_summary_says_secs_and_wer_repeat_across_sizes(summary_md):
    assert "first 8 utterances" in summary_md.replace("\n", " ")
    assert "repeat across data sizes" in summary_md
    small, large = rows_of(summary_md, "clone 2min")[0], rows_of(summary_md, "clone 4min")[0]
    assert small[-3:-1] == large[-3:-1]  # same SECS and WER


def test_speakers_without_references_get_a_footnote_not_a_sentence_per_cell(summary_md):
    virtual = summary_md.split("### Virtual speakers")[1]
    generalist = rows_of(virtual, "generalist")[0]
    assert generalist[1] == "n/a²" and generalist[2] == "n/a²"
    assert summary_md.count("no clean reference") == 1
    assert "- ² not applicable" in summary_md
    for line in summary_md.splitlines():
        if line.startswith("|"):
            assert all(len(cell.strip()) <= 30 for cell in line.strip("|").split("|")), line


def test_the_html_page_holds_the_tables(summary_md):
    page = markdown_to_html(summary_md, "genda-pse results")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") == summary_md.count("| Condition |")
    assert "<th>SDRi (dB)</th>" in page and "n/a¹" in page


def test_table_labels_come_from_their_paths():
    assert eval_table_labels("results/eval/tiny/generalist/spk01.csv") == {
        "model": "tiny", "source": "generalist", "size": "-", "speaker": "spk01",
        "path": "results/eval/tiny/generalist/spk01.csv"}
    assert eval_table_labels("results/eval/small/xtts/6min/F0.csv")["source"] == "xtts"
    assert tts_score_labels("results/tts_scores/xtts/F0.json")["speaker"] == "F0"
    with pytest.raises(ValueError, match="not an evaluation table path"):
        eval_table_labels("results/eval/tiny/spk01.json")


def test_plots_mark_every_speaker(tmp_path):
    import matplotlib.pyplot as plt

    means = speaker_means()
    saved = []
    original = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return original(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Figure, "savefig", keep)
        plot_sdri_by_condition(means, tmp_path / "sdri.png")
        plot_secs_vs_sdri(means, tts_scores(), tmp_path / "secs.png")
    sdri_fig, secs_fig = saved
    legend_labels = {t.get_text() for legend in sdri_fig.legends for t in legend.get_texts()}
    assert legend_labels >= {"r1", "r2"} and "v1" not in legend_labels  # v1 has no SDRi to show
    # the two real speakers' points coincide here: their ids are joined, once per source
    annotated = [t.get_text() for ax in secs_fig.axes for t in ax.texts]
    assert sorted(annotated) == ["r1, r2", "r1, r2"]
    assert "(cosine)" in secs_fig.axes[0].get_xlabel() and "(dB)" in secs_fig.axes[0].get_ylabel()
    for name in ("sdri.png", "secs.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
