"""Per-stage table of the paper grid's slice and its projection to the grid's 20 speakers.

    python bench/workflow/grid_slice/table.py collect --work .gridslice --part tts --out stages_tts.json \
        [--nvidia-smi nvidia_smi_tts.csv]
    python bench/workflow/grid_slice/table.py report stages_tts.json stages_pipeline.json \
        [--exclude tts:score_tts]

`collect` (where the slice ran) reads each job's benchmark file (benchmarks/{rule}/...tsv: its
seconds; its end is the file's time), its log (a job that logged "job on GPU" held a GPU slot; a
score_tts job's logged seconds per utterance of each component), the speech folders (utterances and
seconds; where only the logs came back, from the logs that wrote them) and the nvidia-smi samples
(GPU memory used, sampled every 0.5 s by run.sh), into one JSON.

`report` prints, per rule: jobs, wall (the time at least one of its jobs ran), job seconds, GPU-seconds
(job seconds of the jobs that held a GPU slot), concurrency (GPU-seconds / the time at least one of the
rule's GPU jobs ran) and the peak GPU memory of the whole GPU while the rule's jobs ran. Then two
projections to the grid's 20 speakers (10 real, 10 virtual):

- by rule: per job kind (the job less its speaker: synthesize/xtts, finetune_stacked/tiny), 10 x the
  mean over the measured real speakers + 10 x over the virtual ones; a group not measured takes the
  other's (a virtual-only *_no_gt rule not measured at all: the rule with gt), said in a note; then
  grid GPU-h = grid GPU-seconds / the rule's concurrency / 3600, summed over the rules;
- by speaker (part B, which ran one speaker at a time): the time at least one of a finished speaker's
  GPU jobs ran, x 10 per group, + 20 x part A's mean XTTS synthesis job over synthesize's concurrency
  (part B read XTTS speech as stand-in clips);
- whole run (the full part, every stage of its speakers in one run): the run's wall x the grid's
  GPU-seconds / the slice's (the per-rule sums), the grid's jobs packed on the GPU as the run packed
  them.

A score_tts job scored only the first `tts_scoring.max_utterances` utterances of its folder: its
seconds are first extended to the whole folder, job s + (folder's audio s - scored audio s) x the
components' logged seconds per audio second (by speaker: at score_tts's concurrency). `--exclude
PART:RULE` lists a part's jobs of a rule without projecting them; jobs of rules that the grid does not
run (import_speech) are never projected.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from datetime import datetime
from pathlib import Path

REAL, VIRTUAL = 10, 10  # the grid's speakers (configs/genda2025_speakers.tsv)
NOT_IN_GRID = {"import_speech"}
# a virtual speaker (no gt) runs these rules' *_no_gt twins, whose benchmarks share the rule's folder
STACKED_WITH_GT = ("finetune_stacked", "evaluate_stacked")
UTTERANCE_COST = re.compile(r" INFO (.+): ([0-9.]+) s per utterance$", re.MULTILINE)
SCORED = re.compile(r": (\d+) utterances, ([0-9.]+) s; enrollment")


def read_tsv(path: Path) -> dict:
    with path.open() as f:
        return next(csv.DictReader(f, delimiter="\t"))


WROTE = re.compile(r" INFO wrote (\S+): (\d+) utterances, ([0-9.]+) s of speech")


def speech_seconds(folder: Path, work: Path, source: Path | None = None) -> tuple[int, float]:
    """Utterances and seconds of a speech folder: its manifest; where only the logs are left (run
    files), the synthesize or import_speech log that wrote it, or for gt the sheet's own folder."""
    if (folder / "manifest.csv").is_file():
        rows = list(csv.DictReader((folder / "manifest.csv").open()))
        return len(rows), sum(float(r["duration_s"]) for r in rows)
    rel = str(folder.relative_to(work))
    for log in (work / "logs").glob("*/*/*.log"):
        for name, count, seconds in WROTE.findall(log.read_text(errors="replace")):
            if name == rel:
                return int(count), float(seconds)
    if source is not None:
        import soundfile as sf

        files = [p for p in sorted(source.iterdir()) if p.suffix in (".ogg", ".wav", ".flac")]
        return len(files), sum(sf.info(p).duration for p in files)
    raise FileNotFoundError(f"{folder}: no manifest.csv and no log that wrote it")


def collect(work: Path, part: str, smi: Path | None, speakers: dict[str, dict]) -> dict:
    jobs = []
    for tsv in sorted((work / "benchmarks").rglob("*.tsv")):
        rel = tsv.relative_to(work / "benchmarks").with_suffix("")
        rule, name = rel.parts[0], "/".join(rel.parts[1:])
        bench = read_tsv(tsv)
        log = next((p for p in [work / "logs" / rel.with_suffix(".log")] if p.is_file()), None)
        text = log.read_text(errors="replace") if log else ""
        speaker = next((s for s in speakers if re.search(rf"(^|/){s}(/|$)", name)), None)
        job = {"rule": rule, "job": name, "speaker": speaker, "s": float(bench["s"]),
               "max_rss_mb": float(bench["max_rss"]) if bench["max_rss"] not in ("", "-") else None,
               "end": tsv.stat().st_mtime, "gpu": "job on GPU" in text}
        if rule == "score_tts":
            scored = SCORED.search(text)
            costs = {what: float(s) for what, s in UTTERANCE_COST.findall(text)}
            source = rel.parts[1]
            folder = work / ("data/speakers/" + speaker + "/gt" if source == "gt" else f"results/speech/{source}/{speaker}")
            n_all, s_all = speech_seconds(folder, work, work / speakers[speaker]["gt"] if source == "gt" else None)
            job.update(scored_utterances=int(scored.group(1)), scored_s=float(scored.group(2)),
                       folder_utterances=n_all, folder_s=s_all, s_per_utterance=costs)
        jobs.append(job)
    speech = {}
    for folder in sorted((work / "results" / "speech").glob("*/*")):
        if (folder / "manifest.csv").is_file():
            speech[f"{folder.parent.name}/{folder.name}"] = speech_seconds(folder, work)
    for log in sorted((work / "logs").glob("*/*/*.log")):
        for name, count, seconds in WROTE.findall(log.read_text(errors="replace")):
            key = "/".join(Path(name).parts[-2:])
            if name.startswith("results/speech/") and key not in speech:
                speech[key] = (int(count), float(seconds))
    samples = []
    if smi and smi.is_file():
        for row in csv.reader(smi.open()):
            try:
                stamp = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((stamp, float(row[1]), float(row[2])))
            except (ValueError, IndexError):
                continue
    return {"part": part, "speakers": {name: row["group"] for name, row in speakers.items()}, "jobs": jobs,
            "speech": speech, "gpu_samples": samples}


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def full_seconds(job: dict) -> float:
    """A job's seconds; a score_tts job's extended to its whole speech folder."""
    if job["rule"] != "score_tts":
        return job["s"]
    per_audio_s = sum(job["s_per_utterance"].values()) * job["scored_utterances"] / max(job["scored_s"], 1e-9)
    return job["s"] + (job["folder_s"] - job["scored_s"]) * per_audio_s


def kind_of(job: dict) -> str:
    """The job without its speaker: rule and the rest of its benchmark path (synthesize/xtts,
    finetune_stacked/tiny, score_tts/gt)."""
    parts = [p for p in job["job"].split("/") if p != job["speaker"]]
    return "/".join([job["rule"], *parts])


def groups_of(kind: str) -> tuple[str, ...]:
    """The speaker groups that have such a job in the grid: gt and the rules with gt are real only."""
    rule, *rest = kind.split("/")
    if rule.endswith("_no_gt"):
        return ("virtual",)
    if "gt" in rest or rule in (*STACKED_WITH_GT, "prepare_gt"):
        return ("real",)
    return ("real", "virtual")


def project(gpu_jobs: list[dict], notes: list[str]) -> float:
    """Grid GPU-seconds of one rule: per job kind, the mean over the measured speakers of a group
    times the group's speakers in the grid; a group without a measurement takes the other group's
    mean (or a virtual-only rule the mean of the rule with gt), with a note."""
    means: dict[tuple[str, str], float] = {}
    for (kind, group) in {(kind_of(j), j["group"]) for j in gpu_jobs}:
        values = [full_seconds(j) for j in gpu_jobs if kind_of(j) == kind and j["group"] == group]
        means[kind, group] = sum(values) / len(values)
    total = 0.0
    kinds = {kind_of(j) for j in gpu_jobs}
    for kind in sorted(kinds):
        for group in groups_of(kind):
            count = REAL if group == "real" else VIRTUAL
            if (kind, group) in means:
                total += count * means[kind, group]
                continue
            other = [m for (k, g), m in means.items() if k == kind]
            if other:
                notes.append(f"{kind}: no {group} speaker measured; the other group's mean stands in")
                total += count * other[0]
    return total


def report(parts: list[dict], exclude: set[str] = frozenset()) -> str:
    lines = []
    rules: dict[str, list[dict]] = {}
    samples = []
    for part in parts:
        for job in part["jobs"]:
            group = part["speakers"].get(job["speaker"])
            rule = job["rule"]
            if group == "virtual" and rule in STACKED_WITH_GT:
                rule += "_no_gt"  # the twin rule writes its benchmark into the same folder
            rules.setdefault(rule, []).append(dict(job, rule=rule, group=group, part=part["part"]))
        samples += part["gpu_samples"]
    lines.append("| rule | jobs | wall (s) | job seconds | GPU-seconds | concurrency | peak GPU memory (GiB) |")
    lines.append("|---|---|---|---|---|---|---|")
    projection, notes = [], []
    for rule, jobs in rules.items():
        spans = [(j["end"] - j["s"], j["end"]) for j in jobs]
        gpu_jobs = [j for j in jobs if j["gpu"]]
        gpu_s = sum(j["s"] for j in gpu_jobs)
        busy = union_seconds([(j["end"] - j["s"], j["end"]) for j in gpu_jobs])
        concurrency = gpu_s / busy if busy else 0.0
        peak = max((m for t, m, _ in samples if any(a <= t <= b for a, b in spans)), default=None)
        wall = union_seconds(spans)
        lines.append(f"| {rule} | {len(jobs)} | {wall:.1f} | {sum(j['s'] for j in jobs):.1f} | {gpu_s:.1f} | "
                     f"{concurrency:.2f} | {'' if peak is None else f'{peak / 1024:.1f}'} |")
        projected = [j for j in gpu_jobs if f"{j['part']}:{rule}" not in exclude]
        if projected and rule not in NOT_IN_GRID:
            busy = union_seconds([(j["end"] - j["s"], j["end"]) for j in projected])
            concurrency = sum(j["s"] for j in projected) / busy
            grid_s = project(projected, notes)
            twin = f"{rule}_no_gt"
            if rule in STACKED_WITH_GT and twin not in rules:
                # no virtual speaker's stack ran: the real speaker's (7 members; a virtual one has 6)
                grid_s *= (REAL + VIRTUAL) / REAL
                notes.append(f"{twin}: not measured; the real speakers' {rule} jobs stand in for the virtual "
                             "speakers' (7 conditions against 6)")
            projection.append((rule, len(projected), sum(full_seconds(j) for j in projected), grid_s, concurrency))
    lines.append("")
    lines.append(f"wall: the time at least one of the rule's jobs ran. Peak GPU memory of the whole run: "
                 f"{max((m for _, m, _ in samples), default=0) / 1024:.1f} GiB ({len(samples)} nvidia-smi samples)")
    lines.append("")
    lines.append("Projection to 20 speakers (10 real, 10 virtual). Per rule: grid GPU-s = sum over job kinds "
                 "(the job less its speaker) of 10 x the mean over the measured real speakers + 10 x over the "
                 "virtual ones (score_tts jobs extended to whole folders); GPU-h = grid GPU-s / concurrency "
                 "(that rule's GPU-seconds / the time its GPU jobs ran, in this run) / 3600.")
    if exclude:
        lines.append(f"Not projected (listed above only): {', '.join(sorted(exclude))}.")
    lines.append("")
    lines.append("| rule | jobs projected | their GPU-s (extended) | grid GPU-s | concurrency | grid GPU-h on one GPU |")
    lines.append("|---|---|---|---|---|---|")
    total = 0.0
    for rule, count, slice_s, grid_s, concurrency in projection:
        hours = grid_s / max(concurrency, 1e-9) / 3600
        total += hours
        lines.append(f"| {rule} | {count} | {slice_s:.1f} | {grid_s:.0f} | {concurrency:.2f} | {hours:.3f} |")
    lines.append(f"| **all** | | | | | **{total:.2f}** |")
    for note in sorted(set(notes)):
        lines.append(f"- {note}")
    lines += speaker_walls(parts, rules)
    lines += whole_run(parts, projection)
    tts = [j for j in rules.get("score_tts", [])]
    for part in sorted({j["part"] for j in tts}):
        of_part = [j for j in tts if j["part"] == part]
        lines.append("")
        lines.append(f"score_tts ({part}), seconds per utterance of each component, mean over {len(of_part)} jobs: "
                     + ", ".join(f"{what} {sum(j['s_per_utterance'].get(what, 0) for j in of_part) / len(of_part):.3f}"
                                 for what in sorted({w for j in of_part for w in j["s_per_utterance"]})))
    speech = {f"{part['part']}:{k}": v for part in parts for k, v in part["speech"].items()}
    if speech:
        lines.append("")
        lines.append("speech folders (utterances / seconds): " + "; ".join(
            f"{k} {n} / {s:.0f}" for k, (n, s) in sorted(speech.items())))
    return "\n".join(lines)


def speaker_walls(parts: list[dict], rules: dict[str, list[dict]]) -> list[str]:
    """Per speaker of a part that ran speaker by speaker (pipeline): the time at least one of its GPU
    jobs ran, and the projection 10 x real + 10 x virtual, plus what the part did not synthesize
    (XTTS: part A's synthesize/xtts GPU-seconds per speaker over that rule's concurrency)."""
    lines = []
    for part in parts:
        if part["part"] != "pipeline":
            continue
        scores = [j for j in part["jobs"] if j["rule"] == "score_tts"]
        busy = union_seconds([(j["end"] - j["s"], j["end"]) for j in scores])
        score_concurrency = sum(j["s"] for j in scores) / busy if busy else 1.0
        walls, skipped = {}, []
        for speaker, group in part["speakers"].items():
            jobs = [j for j in part["jobs"] if j["speaker"] == speaker and j["gpu"]]
            if not any(j["rule"].startswith("evaluate") for j in jobs):
                if jobs:
                    skipped.append(f"- {speaker}: its stages did not all finish (no evaluation job); left out")
                continue
            if jobs:
                # a score_tts job that scored part of its folder (part A): the rest, at that rule's concurrency
                rest = sum(full_seconds(j) - j["s"] for j in jobs if j["rule"] == "score_tts") / score_concurrency
                walls[speaker] = (group, union_seconds([(j["end"] - j["s"], j["end"]) for j in jobs]) + rest,
                                  len(jobs), rest)
        xtts = [j for j in rules.get("synthesize", []) if j["part"] == "tts" and kind_of(j) == "synthesize/xtts"]
        a_synth = [j for j in rules.get("synthesize", []) if j["part"] == "tts"]
        busy = union_seconds([(j["end"] - j["s"], j["end"]) for j in a_synth])
        concurrency = sum(j["s"] for j in a_synth) / busy if busy else 1.0
        extra = sum(j["s"] for j in xtts) / len(xtts) / concurrency if xtts else 0.0
        lines.append("")
        lines.append("Per speaker, part B (its stages one speaker at a time): the time at least one of its GPU jobs "
                     "ran, plus the rest of its score_tts folders: " + "; ".join(
                         f"{s} ({g}) {w:.1f} s ({rest:.1f} s of it the rest), {n} GPU jobs"
                         for s, (g, w, n, rest) in walls.items()))
        lines += skipped
        real = [w for g, w, _, _ in walls.values() if g == "real"]
        virtual = [w for g, w, _, _ in walls.values() if g == "virtual"]
        real_s = sum(real) / len(real) if real else None
        virtual_s = sum(virtual) / len(virtual) if virtual else None
        if real_s is None and virtual_s is None:
            continue
        if virtual_s is None:
            lines.append("- no virtual speaker finished: the real speaker's time stands in (one condition more)")
        total = REAL * (real_s or virtual_s) + VIRTUAL * (virtual_s or real_s) + (REAL + VIRTUAL) * extra
        lines.append(f"Whole grid on one GPU, by speaker: 10 x {real_s or virtual_s:.1f} s + 10 x "
                     f"{virtual_s or real_s:.1f} s + 20 x {extra:.1f} s (XTTS synthesis: part A's mean job, "
                     f"{sum(j['s'] for j in xtts) / max(len(xtts), 1):.1f} s, over synthesize's concurrency "
                     f"{concurrency:.2f}) = {total:.0f} s = **{total / 3600:.2f} GPU-h**")
    return lines


def whole_run(parts: list[dict], projection: list[tuple]) -> list[str]:
    """The full part (every stage of every speaker in one snakemake run): the run's wall (its first job's
    start to its last job's end, the GPU held throughout) scaled to the grid by the jobs the grid runs,
    wall x grid GPU-seconds / the slice's GPU-seconds (the per-rule projection's sums, so the grid's
    mix of real and virtual speakers and of job kinds), i.e. the grid's jobs packed on the GPU as
    this run packed them."""
    lines = []
    full = [part for part in parts if part["part"] == "full" and part["jobs"]]
    if full and len(parts) > 1:
        return ["", "Whole run: not projected beside other parts (the per-rule sums would mix them): report "
                    "stages_full.json alone"]
    for part in full:
        spans = [(j["end"] - j["s"], j["end"]) for j in part["jobs"]]
        wall = max(b for _, b in spans) - min(a for a, _ in spans)
        gpu = [(j["end"] - j["s"], j["end"]) for j in part["jobs"] if j["gpu"]]
        slice_s = sum(row[2] for row in projection)
        grid_s = sum(row[3] for row in projection)
        speakers = {j["speaker"] for j in part["jobs"] if j["speaker"]}
        lines.append("")
        unfinished = sorted(s for s in speakers if unfinished_stacks(part["jobs"], s))
        if unfinished:
            lines.append(f"Whole run (full part): wall {wall:.1f} s; {', '.join(unfinished)}: a stack without its "
                         "evaluation (the run was stopped before its end?): no whole-run projection")
            continue
        if not slice_s:
            lines.append(f"Whole run (full part): wall {wall:.1f} s; no GPU job ran (SMOKE=1 on the CPU?): no projection")
            continue
        scale = grid_s / slice_s
        lines.append(f"Whole run (full part, {len(speakers)} speakers at once): wall {wall:.1f} s, a GPU job running "
                     f"{union_seconds(gpu):.1f} s of it; GPU-seconds {slice_s:.1f} in the slice, {grid_s:.0f} in "
                     f"the grid (x {scale:.2f})")
        lines.append(f"Whole grid on one GPU, packed as this run: {wall:.1f} s x {scale:.2f} = {wall * scale:.0f} s "
                     f"= **{wall * scale / 3600:.2f} GPU-h** (by speakers alone, x {REAL + VIRTUAL}/{len(speakers)}: "
                     f"{wall * (REAL + VIRTUAL) / len(speakers) / 3600:.2f} GPU-h)")
    return lines


def unfinished_stacks(jobs: list[dict], speaker: str) -> bool:
    """Whether a speaker's run ended short: no stack, or a stack (model size) without its evaluation."""
    sizes = {rule: {j["job"] for j in jobs if j["speaker"] == speaker and j["rule"] == rule}
             for rule in STACKED_WITH_GT}
    return not sizes["finetune_stacked"] or sizes["finetune_stacked"] != sizes["evaluate_stacked"]


def durations(part: dict) -> dict[str, float]:
    """Mean seconds per utterance of each synthesized system (the stand-in speech's lengths)."""
    sums: dict[str, list[float]] = {}
    for key, (n, s) in part["speech"].items():
        total = sums.setdefault(key.split("/")[0], [0, 0.0])
        total[0] += n
        total[1] += s
    return {system: round(s / n, 3) for system, (n, s) in sums.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("collect")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--part", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--nvidia-smi", type=Path, default=None)
    p.add_argument("--sheet", type=Path, default=Path(__file__).with_name("speakers.tsv"))
    p.add_argument("--durations-out", type=Path, default=None)
    p = sub.add_parser("report")
    p.add_argument("parts", type=Path, nargs="+")
    p.add_argument("--exclude", nargs="*", default=[], metavar="PART:RULE",
                   help="list these parts' jobs of the rule but leave them out of the projection")
    args = parser.parse_args()
    if args.what == "collect":
        rows = csv.DictReader((line for line in args.sheet.open() if not line.startswith("#")), delimiter="\t")
        part = collect(args.work, args.part, args.nvidia_smi, {r["speaker"]: r for r in rows})
        args.out.write_text(json.dumps(part) + "\n")
        if args.durations_out:
            args.durations_out.write_text(json.dumps(durations(part)) + "\n")
        print(report([part]))
    else:
        print(report([json.loads(p.read_text()) for p in args.parts], set(args.exclude)))


if __name__ == "__main__":
    main()
