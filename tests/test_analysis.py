"""The analysis of the open questions (scoring.analysis, the analyze step and rules/analysis.smk)
on constructed data whose answer is known: a constructed difference is found with scipy's
p-value, a score ranked as the gain gives rho 1, the speaker-centred view removes a per-speaker
offset, fewer than 5 speakers give the reason instead of numbers, the minutes of a data size are
its training utterances' durations, a crossed model trained on noise alone loses to the matched
one, and the analyze rule runs through snakemake on a tiny setting."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from signals import noise_like, speech_like
from test_reruns import directory_patterns, placeholder, planned, run
from test_workflow import REPO, load_config, make_workdir, snakemake

from workflow_scripts import evaluate, finetune
from workflow_scripts.files.audio import SAMPLE_RATE, mix_at_snr, write_audio
from workflow_scripts.files.folders import write_noise_folder, write_speech_folder, write_test_folder
from workflow_scripts.model.convtasnet import build_model, save_checkpoint
from workflow_scripts.scoring import analysis
from workflow_scripts.scoring.analysis_tables import significance_markdown, tts_gain_markdown
from workflow_scripts.scoring.results import read_eval_tables

MIXTURES = 9


def utterance_table(speaker: str, sdri_db: float, seed: int) -> pd.DataFrame:
    """A speaker's per-utterance evaluation table whose mean SDRi is exactly `sdri_db`."""
    rng = np.random.default_rng(seed)
    spread = rng.normal(0.0, 0.5, MIXTURES)
    sdri = sdri_db + spread - spread.mean()
    sdr_in = rng.uniform(-2.5, 2.5, MIXTURES)
    estoi_in, pesq_in = rng.uniform(0.5, 0.7, MIXTURES), rng.uniform(1.0, 1.2, MIXTURES)
    return pd.DataFrame({
        "mixture_id": [f"{speaker}_mix{i:02d}" for i in range(MIXTURES)], "noise_id": "n", "snr_db": 0.0,
        "sdr_in_db": sdr_in, "sdr_db": sdr_in + sdri, "sdri_db": sdri, "estoi_in": estoi_in,
        "estoi": estoi_in + 0.01 * sdri, "pesq_in": pesq_in, "pesq": pesq_in + 0.02 * sdri, "notes": "",
    })


def tts_summary(secs: float, wer: float) -> dict:
    return {"n_utterances": 8, "secs_resemblyzer_mean": secs, "secs_xvector_mean": None,
            "secs_xvector_reason": "x-vector weights not downloaded", "wer": wer, "asr": "pocketsphinx-en-us",
            "utmos_mean": None, "utmos_reason": "UTMOS weights not available offline",
            "dnsmos_ovrl_mean": 3.0, "distillmos_mean": None, "distillmos_reason": "not run"}


def constructed_evals(sdri: dict[tuple[str, str, str], float], model: str = "tiny") -> pd.DataFrame:
    """Evaluation tables of (source, size, speaker) -> mean SDRi, labelled as read_eval_tables does."""
    frames = []
    for i, ((source, size, speaker), value) in enumerate(sdri.items()):
        frames.append(utterance_table(speaker, value, seed=i).assign(model=model, source=source, size=size,
                                                                    speaker=speaker))
    return pd.concat(frames, ignore_index=True)


SPEAKERS = [f"spk{i:02d}" for i in range(1, 7)]


def test_significance_finds_a_constructed_difference_with_scipy_s_p_value():
    offsets = dict(zip(SPEAKERS, [0.0, 1.5, -1.0, 2.5, 0.5, -2.0]))
    gt_gain = dict(zip(SPEAKERS, [2.0, 2.4, 1.7, 2.2, 1.9, 2.6]))
    sdri = {("generalist", "-", s): 6 + offsets[s] for s in SPEAKERS}
    sdri |= {("gt", "8utt", s): 6 + offsets[s] + gt_gain[s] for s in SPEAKERS}
    sdri |= {("clone", "8utt", s): 6 + offsets[s] + gt_gain[s] - 0.5 for s in SPEAKERS}
    evals = constructed_evals(sdri)
    means, comparisons = analysis.significance(evals, ["sdri_db", "estoi", "pesq"])
    gt = means[(means.condition == "gt 8utt") & (means.metric == "sdri_db")].iloc[0]
    assert gt["mean"] == pytest.approx(np.mean([6 + offsets[s] + gt_gain[s] for s in SPEAKERS]))
    assert gt.low < gt["mean"] < gt.high and gt.n_speakers == 6

    row = comparisons[(comparisons.condition == "gt 8utt") & (comparisons.reference == "generalist")
                      & (comparisons.metric == "sdri_db")].iloc[0]
    assert row.difference == pytest.approx(np.mean(list(gt_gain.values())))
    speaker_gains = [gt_gain[s] for s in SPEAKERS]
    assert row.p_units == pytest.approx(stats.wilcoxon(speaker_gains, np.zeros(6)).pvalue)
    gt_utt, generalist_utt = evals[evals.source == "gt"], evals[evals.source == "generalist"]
    assert row.p_utterances == pytest.approx(stats.wilcoxon(gt_utt.sdri_db.to_numpy(),
                                                            generalist_utt.sdri_db.to_numpy()).pvalue)
    # the clone against gt of its size: 0.5 dB less for every speaker
    clone = comparisons[(comparisons.condition == "clone 8utt") & (comparisons.reference == "gt 8utt")
                        & (comparisons.metric == "sdri_db")].iloc[0]
    assert clone.difference == pytest.approx(-0.5) and clone.low == pytest.approx(-0.5)
    # Holm within the model size, metric and view: the family is every comparison of SDRi
    family = comparisons[comparisons.metric == "sdri_db"].p_units.to_numpy()
    assert len(family) == 3
    m = np.isfinite(family).sum()
    assert row.p_units_holm == pytest.approx(min(1.0, max(
        (m - k) * p for k, p in enumerate(sorted(family[np.isfinite(family)])) if p <= row.p_units)))
    text = significance_markdown(means, comparisons, ["sdri_db", "estoi", "pesq"])
    assert "| gt 8utt | generalist | SDRi (dB) | +2.13 [" in text


def test_with_four_speakers_the_tables_say_too_few_speakers():
    sdri = {("generalist", "-", s): 6.0 + i for i, s in enumerate(SPEAKERS[:4])}
    sdri |= {("gt", "8utt", s): 8.0 + i for i, s in enumerate(SPEAKERS[:4])}
    means, comparisons = analysis.significance(constructed_evals(sdri), ["sdri_db"])
    assert comparisons.p_units.isna().all() and comparisons.p_utterances.isna().all()
    assert set(comparisons.units_reason) == {"too few speakers (4 < 5)"}
    text = significance_markdown(means, comparisons, ["sdri_db"])
    assert "| gt 8utt | generalist | SDRi (dB) | +2.00 [n/a¹] | 4 | n/a¹ | 36 | n/a¹ |" in text
    assert "- ¹ too few speakers (4 < 5)" in text


def gain_table(scores: dict[tuple[str, str], float], gains: dict[tuple[str, str], float]):
    """gain_rows' input: speaker means with the generalist at 0 dB, and TTS scores per (source, speaker)."""
    rows = [{"model": "tiny", "source": "generalist", "size": "-", "speaker": s, "sdri_db": 0.0}
            for s in dict.fromkeys(s for _, s in gains)]
    rows += [{"model": "tiny", "source": src, "size": "8utt", "speaker": s, "sdri_db": g}
             for (src, s), g in gains.items()]
    tts = pd.DataFrame([{"source": src, "speaker": s, "secs": v, "wer": 1 - v, "utmos": np.nan,
                         "utmos_reason": "UTMOS weights not available offline"}
                        for (src, s), v in scores.items()])
    return analysis.gain_rows(pd.DataFrame(rows), tts), tts


def test_a_score_ranked_as_the_gain_gives_rho_one_and_wer_minus_one():
    scores = {(src, s): 0.6 + 0.05 * i + (0.02 if src == "gt" else 0) for i, s in enumerate(SPEAKERS)
              for src in ("gt", "clone")}
    gains = {key: np.exp(5 * value) for key, value in scores.items()}  # monotone in the score
    rows, tts = gain_table(scores, gains)
    table = analysis.tts_gain_correlations(rows, tts, resamples=500)
    secs = table[table.score == "secs"].iloc[0]
    assert secs.rho == pytest.approx(1.0) and secs.low == pytest.approx(1.0) and secs.n_speakers == 6
    # centred, every speaker's gt is 0.01 above its clone: tied scores, so rho within is below 1
    assert secs.rho_within > 0.8
    assert table[table.score == "wer"].iloc[0].rho == pytest.approx(-1.0)
    utmos = table[table.score == "utmos"].iloc[0]
    assert utmos.absent_reason == "UTMOS weights not available offline"
    text = tts_gain_markdown(table)
    assert "| SECS resemblyzer (cos) | tiny | 12 | 6 | gt, clone | +1.00 [1.00, 1.00] | +0.87 [" in text
    assert "UTMOS (1-5) n/a" in text and "UTMOS: UTMOS weights not available offline" in text


def test_the_speaker_centred_view_removes_a_per_speaker_offset():
    """Within each speaker, gt has the higher SECS and the larger gain; across speakers, the
    speakers with the highest SECS gain least (an offset per speaker): pooled rho < 0, within 1."""
    scores, gains = {}, {}
    for i, s in enumerate(SPEAKERS):
        for src, bump in (("clone", 0.0), ("gt", 0.03 + 0.005 * i)):
            scores[(src, s)] = 0.6 + 0.05 * i + bump
            gains[(src, s)] = 10.0 - 2.0 * i + 20 * bump
    rows, tts = gain_table(scores, gains)
    secs = analysis.tts_gain_correlations(rows, tts, resamples=500).set_index("score").loc["secs"]
    assert secs.rho < -0.8
    assert secs.rho_within == pytest.approx(1.0) and secs.low_within == pytest.approx(1.0)
    assert secs.slope_within == pytest.approx(20.0)


def test_the_minutes_of_a_data_size_are_its_training_utterances(tmp_path):
    durations = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    rows = [{"utt_id": f"u{i}", "audio": np.full(int(d * SAMPLE_RATE), 0.1, np.float32), "text": "t"}
            for i, d in enumerate(durations)]
    write_speech_folder(tmp_path / "gt", rows)
    minutes = analysis.training_minutes({("gt", "spk01"): str(tmp_path / "gt")},
                                        {"2utt": (2, 1), "5utt": (5, 2)}, [("gt", "2utt"), ("gt", "5utt")])
    assert minutes.set_index("size").minutes.to_dict() == pytest.approx({"2utt": 5.0 / 60, "5utt": 25.0 / 60})


# ---- a crossed model trained on noise alone --------------------------------------------------


def folders_for_cross(root):
    """A speaker's speech and test set (speech-like tones), its noises, and noise-only "speech"."""
    speech = [{"utt_id": f"s{i}", "audio": speech_like(2 * SAMPLE_RATE, 100 + i), "text": "s"} for i in range(8)]
    write_speech_folder(root / "speech", speech)
    noise_speech = [{"utt_id": f"n{i}", "audio": noise_like(2 * SAMPLE_RATE, 200 + i), "text": "n"}
                    for i in range(8)]
    write_speech_folder(root / "noise_only", noise_speech)
    rng = np.random.default_rng(0)
    noises = [{"name": f"hum{i}", "kind": "hum", "params": {},
               "audio": (0.2 * np.sin(2 * np.pi * (50 + 30 * i) * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)
                         + 0.05 * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32)} for i in range(3)]
    write_noise_folder(root / "noises", "", noises)
    tests = []
    for i in range(6):
        clean = speech_like(2 * SAMPLE_RATE, 300 + i)
        mixture, _ = mix_at_snr(clean, noises[i % 3]["audio"], 0.0, offset=100 * i)
        tests.append({"mixture_id": f"m{i}", "mixture": mixture, "clean": clean, "noise_id": f"n{i % 3}",
                      "snr_db": 0.0})
    write_test_folder(root / "test", tests)


def test_a_crossed_model_trained_on_noise_alone_loses_to_the_matched_one(tmp_path, one_thread):
    folders_for_cross(tmp_path)
    init = tmp_path / "init.pt"
    save_checkpoint(init, build_model("tiny"))
    for name in ("speech", "noise_only"):
        finetune.main(["--init", str(init), "--speech-dir", str(tmp_path / name), "--noise-dir",
                       str(tmp_path / "noises"), "--out-dir", str(tmp_path / f"model_{name}"), "--num-train", "6",
                       "--num-val", "2", "--batch-size", "4", "--crop-seconds", "1.0", "--lr", "3e-3",
                       "--max-steps", "40", "--val-every", "20", "--patience", "3", "--seed", "0",
                       "--device", "cpu", "--threads", "1"])
    # the test speaker B's own model (matched) and speaker N's, trained on noise (crossed)
    matched = tmp_path / "eval" / "tiny" / "gt" / "6utt" / "B.csv"
    crossed = tmp_path / "eval_crossed" / "tiny" / "gt" / "6utt" / "N" / "B.csv"
    for name, table in (("speech", matched), ("noise_only", crossed)):
        evaluate.main(["--model", str(tmp_path / f"model_{name}" / "model.pt"), "--test-dir",
                       str(tmp_path / "test"), "--device", "cpu", "--workers", "1",
                       "--out-csv", str(table), "--out-summary", str(table.with_suffix(".json"))])
    evals = read_eval_tables([{"model": "tiny", "source": "gt", "size": "6utt", "speaker": "B", "path": matched}])
    crossed_tables = analysis.read_crossed_tables([crossed])
    pairs = analysis.cross_pairs(evals, crossed_tables, ["sdri_db"])
    assert list(pairs[["train", "test"]].iloc[0]) == ["N", "B"]
    assert pairs.gap.iloc[0] > 1.0, pairs  # dB
    summary = analysis.cross_summary(evals, crossed_tables, pairs, resamples=200)
    assert summary.n.iloc[0] == 1 and summary.units_reason.iloc[0] == "too few pairs (1 < 5)"


# ---- the rule, through snakemake ----------------------------------------------------------


ANALYSIS_SPEAKERS = ["ciA", "ciB", "ciC", "ciD", "ciE", "ciF"]
SIZES = {"3utt": 3, "6utt": 6, "12utt": 12}
OFFSETS = dict(zip(ANALYSIS_SPEAKERS, [0.0, 1.0, -1.0, 0.5, -0.5, 1.5]))
SECS = dict(zip(ANALYSIS_SPEAKERS, [0.70, 0.80, 0.75, 0.90, 0.85, 0.65]))


def constructed_sdri(source: str, size: str, speaker: str) -> float:
    """generalist 6 dB + the speaker's offset; fine-tuned: + 1 dB per doubling of the data, and
    the clone 10 dB x its SECS below gt."""
    value = 6.0 + OFFSETS[speaker]
    if source != "generalist":
        value += 1.0 + np.log2(SIZES[size] / 3) - (10 * (1 - SECS[speaker]) if source == "worldclone" else 0)
    return value


def mark_complete_with_constructed_tables(workdir):
    """Every planned job's outputs made (as test_reruns.mark_complete does), the tables the
    analysis reads constructed, then every job marked as run by --touch."""
    is_directory = directory_patterns(REPO)
    for _, output in planned(REPO, workdir):
        for name in filter(None, (p.strip() for p in output.split(","))):
            if any(pattern.fullmatch(name) for pattern in is_directory):
                (workdir / name).mkdir(parents=True, exist_ok=True)
            else:
                placeholder(workdir / name)
    write_constructed_results(workdir)
    run(REPO, workdir, "--touch", "--forceall", "--cores", "1")
    assert planned(REPO, workdir) == []


def write_constructed_results(workdir):
    """Every table the analyze rule reads, constructed where the placeholders are."""
    for i, path in enumerate(sorted((workdir / "results" / "eval" / "tiny").rglob("*.csv"))):
        labels = path.relative_to(workdir / "results" / "eval" / "tiny").with_suffix("").parts
        source, size, speaker = (labels[0], "-", labels[1]) if len(labels) == 2 else labels
        utterance_table(speaker, constructed_sdri(source, size, speaker), seed=i).to_csv(path, index=False)
    for i, path in enumerate(sorted((workdir / "results" / "eval_crossed").rglob("*.csv"))):
        _, source, size, _, speaker = path.relative_to(workdir / "results" / "eval_crossed").with_suffix("").parts
        # the crossed model: 1 dB below the test speaker's own
        utterance_table(speaker, constructed_sdri(source, size, speaker) - 1.0, seed=100 + i).to_csv(path, index=False)
    for path in (workdir / "results" / "tts_scores").rglob("*.json"):
        secs = 0.95 if path.parent.name == "gt" else SECS[path.stem]
        path.write_text(json.dumps(tts_summary(secs, 0.3 if path.parent.name == "gt" else 1.2 - secs)))
    for folder in [*(workdir / "data" / "speakers").glob("*/gt"), *(workdir / "results" / "speech").glob("*/*")]:
        rows = [{"utt_id": f"u{i:02d}", "audio": np.full(3 * SAMPLE_RATE, 0.1, np.float32), "text": "t"}
                for i in range(14)]
        write_speech_folder(folder, rows)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The CI setting with 6 speakers, 3 data sizes and 5 crossed pairs, every job marked
    complete, the tables the analysis reads constructed, and the analysis run through snakemake."""
    config = load_config("tests/config/ci.yaml")
    config["data_sizes"] = {name: {"train": n, "val": 2} for name, n in SIZES.items()}
    config["cross"] = [{"train": a, "test": b, "sources": ["worldclone"], "sizes": ["6utt"]}
                       for a, b in zip(ANALYSIS_SPEAKERS[:5], ANALYSIS_SPEAKERS[1:])]
    sheet = "speaker\tseed\n" + "".join(f"{s}\t{11 + i}\n" for i, s in enumerate(ANALYSIS_SPEAKERS))
    workdir = make_workdir(tmp_path_factory.mktemp("analysis"), config, sheet)
    mark_complete_with_constructed_tables(workdir)
    targets = ["results/analysis/significance.md", "results/analysis/tts_vs_gain.png",
               "results/analysis/cross.md", "results/analysis/datasize.png"]
    done = snakemake(workdir, "--cores", "1", "--forcerun", "analyze", *targets)
    assert "analyze" in done.stderr and "evaluate" not in done.stderr
    return workdir


def test_the_analyze_rule_writes_every_table_and_plot(analysed):
    out = analysed / "results" / "analysis"
    for name in ["significance", "tts_vs_gain", "cross"]:
        for suffix in (".md", ".csv", ".html"):
            assert (out / f"{name}{suffix}").stat().st_size > 0, name + suffix
        assert "<table>" in (out / f"{name}.html").read_text()
    for name in ["tts_vs_gain.png", "datasize.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # gt gains 1 dB per doubling over the generalist's 6 dB + offset: at 12utt, 3 dB for everyone
    significance = pd.read_csv(out / "significance.csv")
    row = significance[(significance.kind == "comparison") & (significance.condition == "gt 12utt")
                       & (significance.reference == "generalist") & (significance.metric == "sdri_db")].iloc[0]
    assert row.difference == pytest.approx(3.0) and row.n == 6
    assert row.p_units == pytest.approx(stats.wilcoxon(np.full(6, 3.0)).pvalue)


def test_the_crossed_pairs_show_the_constructed_gap(analysed):
    cross = pd.read_csv(analysed / "results" / "analysis" / "cross.csv")
    pairs = cross[(cross.kind == "pair") & (cross.metric == "sdri_db")]
    assert list(zip(pairs.train, pairs.test)) == list(zip(ANALYSIS_SPEAKERS[:5], ANALYSIS_SPEAKERS[1:]))
    assert pairs.gap.to_numpy() == pytest.approx(np.ones(5))
    over = cross[(cross.kind == "over pairs") & (cross.metric == "sdri_db")].iloc[0]
    assert over.difference == pytest.approx(1.0) and over.n == 5 and np.isfinite(over.p_units)
    assert "| worldclone | 6utt | ciA | ciB |" in (analysed / "results" / "analysis" / "cross.md").read_text()


def test_the_tts_scores_and_the_data_size_curve_follow_the_construction(analysed):
    out = analysed / "results" / "analysis"
    correlations = pd.read_csv(out / "tts_vs_gain.csv").set_index("score")
    # within a speaker the gain follows SECS (gt above the clone at every size), so rho within > 0
    assert correlations.loc["secs", "rho_within"] > 0.5 and correlations.loc["secs", "n_speakers"] == 6
    assert correlations.loc["secs", "low_within"] > 0
    curve = pd.read_csv(out / "datasize.csv")
    gt = curve[curve.source == "gt"].set_index("size")
    # 3 s utterances: the training utterances' minutes
    assert gt.minutes.to_dict() == pytest.approx({z: n * 3 / 60 for z, n in SIZES.items()})
    assert np.diff(gt.loc[list(SIZES), "sdri_db"]) == pytest.approx([1.0, 1.0])


def test_a_crossed_pair_of_an_unknown_speaker_or_condition_stops_before_any_job(tmp_path):
    config = load_config("tests/config/ci.yaml")
    sheet = (REPO / "tests" / "config" / "ci_speakers.tsv").read_text()
    for cross, message in [
        ({"train": "ciA", "test": "ciZ"}, "config cross[0] (train ciA, test ciZ): test speaker ciZ is not in the"),
        ({"train": "ciA", "test": "ciA"}, "a crossed pair needs two speakers"),
        ({"train": "ciA", "test": "ciB", "sizes": ["9utt"]}, "ciA is not fine-tuned on gt 9utt"),
    ]:
        workdir = make_workdir(tmp_path, dict(config, cross=[cross]), sheet)
        result = snakemake(workdir, "-n", check=False)
        assert result.returncode != 0 and message in result.stdout + result.stderr, result.stderr[-2000:]
        assert not (workdir / "results").exists()


def test_the_data_size_config_plans_the_curve_with_every_fine_tune_run_to_early_stopping(tmp_path):
    """configs/demo_datasize.yaml merged onto the demo's config (as --configfile a b merges them):
    3 nested sizes per source, fine-tunes bounded by early stopping, and the curve in the DAG."""
    from snakemake.utils import update_config

    config = load_config("config.yaml")
    update_config(config, load_config("configs/demo_datasize.yaml"))
    assert [config["data_sizes"][s]["train"] for s in ("8utt", "16utt", "32utt")] == [8, 16, 32]
    recipe = config["finetune"]
    assert recipe["max_steps"] >= 10 * recipe["val_every"] and recipe["patience"] >= 1
    workdir = make_workdir(tmp_path, config, (REPO / "configs" / "demo_speakers.tsv").read_text())
    dry = snakemake(workdir, "-n", "--printshellcmds").stdout
    assert "results/analysis/datasize.png" in dry
    # the fine-tuned models among the jobs' outputs (one stacked job's outputs hold a speaker's all)
    outputs = " ".join(re.findall(r"^\s+output: (.*)$", dry, re.M))
    finetunes = re.findall(r"results/finetune/tiny/(\w+)/(\w+)/(\w+)/model\.pt", outputs)
    assert {(source, size) for source, size, _ in finetunes} == {
        (source, size) for source in ("gt", "worldclone") for size in ("8utt", "16utt", "32utt")}
    assert "--max-steps 300" in dry


def test_too_few_speakers_still_count_only_the_utterances_scored_under_both_conditions():
    # 4 speakers, a scored on 2 of each speaker's 3 mixtures and b on 1 (NaN elsewhere): 4 pairs have both
    a_utterances = np.tile([2.0, 2.5, np.nan], 4)
    b_utterances = np.tile([1.5, np.nan, np.nan], 4) + np.repeat(np.arange(4) * 0.1, 3)
    row = analysis.difference_row([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 1.5, 2.0], a_utterances, b_utterances, 100, 0)
    assert row["n_utterances"] == 4 and np.isnan(row["p_utterances"])
    assert row["utterances_reason"] == "too few speakers (4 < 5)"
