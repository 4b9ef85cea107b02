"""The results tables and plots as a reader sees them: units, footnotes, attributable points, and the
scores without a reference of speakers who have none."""

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.scoring.enhanced import METRICS, NO_REFERENCE
from workflow_scripts.scoring.plots import plot_sdri_by_condition, plot_secs_vs_sdri
from workflow_scripts.scoring.results import (
    eval_table_labels,
    per_speaker_means,
    read_eval_tables,
    summarize_groups,
    tts_score_labels,
)
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


def eval_table(referenced: bool, gain: float, texts: bool) -> pd.DataFrame:
    """A per-utterance evaluation table of two mixtures as evaluate writes it."""
    nan = np.nan
    rows = []
    for i in range(2):
        reference = {"sdr_in_db": 0.0, "sdr_db": 5.0 + gain, "sdri_db": 5.0 + gain, "estoi_in": 0.6, "estoi": 0.7,
                     "pesq_in": 1.5, "pesq": 2.0} if referenced else dict.fromkeys(METRICS, nan)
        rows.append({"mixture_id": f"m{i}", "noise_id": "n", "snr_db": 0.0, **reference,
                     "dnsmos_sig_in": 3.0, "dnsmos_sig": 3.0 + gain, "dnsmos_bak_in": 2.0, "dnsmos_bak": 3.5,
                     "dnsmos_ovrl_in": 2.0 + i, "dnsmos_ovrl": 2.5 + gain + i, "distillmos_in": 2.0,
                     "distillmos": 2.2 + gain,
                     "wer_in": 0.5 if texts else nan, "wer": (0.25 if i == 0 else 0.5) if texts else nan,
                     "reference_words": (4 if i == 0 else 12) if texts else nan, "asr": "pocketsphinx-en-us",
                     "notes": "; ".join([NO_REFERENCE] * (not referenced) + ["wer: no transcript"] * (not texts))})
    return pd.DataFrame(rows)


def test_speakers_without_references_get_nonintrusive_scores_in_and_out(tmp_path):
    """A real speaker with references and texts, a virtual one with neither: the second table per
    group has every score of the mixture beside the output's, the WER where there is text."""
    paths = []
    for speaker, referenced in (("r1", True), ("v1", False)):
        for source, size, gain in (("generalist", "-", 0.0), ("clone", "2min", 0.5)):
            path = tmp_path / "tiny" / source / (size if source != "generalist" else "") / f"{speaker}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            eval_table(referenced, gain, texts=referenced).to_csv(path, index=False)
            paths.append(path)
    means = per_speaker_means(read_eval_tables([eval_table_labels(p) for p in paths]))
    groups = {"r1": "real", "v1": "virtual"}
    means["group"] = means.speaker.map(groups)
    real_clone = means[(means.speaker == "r1") & (means.source == "clone")].iloc[0]
    assert real_clone.wer == pytest.approx((0.25 * 4 + 0.5 * 12) / 16)  # the corpus WER of the speaker
    summary = summarize_groups(means, pd.DataFrame(), groups)
    markdown = summary_markdown(summary, pd.DataFrame())

    virtual = markdown.split("### Virtual speakers")[1]
    assert rows_of(virtual, "clone 2min")[0][1] == "n/a¹"  # SDRi: no reference
    table = virtual.split("#### Non-intrusive scores")[1]
    header = next(line for line in table.splitlines() if line.startswith("| Condition |"))
    assert "| DNSMOS OVRL in (1-5) | DNSMOS OVRL out (1-5) |" in header and "WER out (%)" in header
    clone = rows_of(table, "clone 2min")[0]
    assert clone[5:7] == ["2.50", "3.50"]  # DNSMOS OVRL in, out: means of 2.0, 3.0 and 3.0, 4.0
    assert clone[7:9] == ["2.00", "2.70"]  # DistillMOS
    assert clone[9:11] == ["n/a²", "n/a²"] and "- ² WER: no transcript" in markdown
    real = markdown.split("### Real speakers")[1].split("#### Non-intrusive scores")[1]
    assert rows_of(real, "clone 2min")[0][9:11] == ["50.0", "43.8"]  # 7 errors in 16 words
    assert "transcribed by pocketsphinx-en-us" in markdown.replace("\n", " ")
    assert markdown.count("| Condition |") == 6 and "unprocessed" not in table
    every = markdown.split("### All speakers")[1].split("#### Non-intrusive scores")[1]
    assert rows_of(every, "clone 2min")[0][9:] == ["50.0", "43.8", "2 (1 with text)"]  # the WER: r1's
