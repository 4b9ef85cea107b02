#!/usr/bin/env bash
# The paper grid's slice through the workflow's own rules on one GPU: challenge speakers with every
# condition of configs/genda2025.yaml (gt 6min; yourtts, speecht5, xtts at 6min and 30min), ConvTasNet
# tiny, small and medium, `snakemake --cores all` with the default profile (GENDA_JOBS_PER_GPU=4; the
# greedy scheduler, as the ILP one needs pulp, not carried). A device call runs at most 10 minutes and
# starts bare, so the slice runs in two parts:
#
#   bash bench/workflow/grid_slice/run.sh tts        # A (config_tts.yaml, speakers.tsv: F0, M1,
#                                                    #   VirtualM3): prepare, clone_voice, synthesize,
#                                                    #   score_tts
#   bash bench/workflow/grid_slice/run.sh pipeline   # B (config_pipeline.yaml, speakers_pipeline.tsv:
#                                                    #   F0, then VirtualM3): every stage, speaker by
#                                                    #   speaker, fine-tuning included
#
#   bash bench/workflow/grid_slice/run.sh full       # (config_full.yaml, speakers.tsv) every stage of
#                                                    #   the three speakers in one snakemake run, XTTS
#                                                    #   synthesis included: longer than a device call,
#                                                    #   so a call starts it in its own process session
#                                                    #   and later calls follow it (device.sh);
#                                                    #   SPEAKERS picks fewer of them
#
# All build production-size random-weight models (inputs.py models, which says how they are made to
# stop): A XTTS-v2, YourTTS, SpeechT5 + HiFi-GAN, the x-vector and Whisper large-v3; B all but XTTS,
# whose speech B reads as stand-in clips of A's utterance length (inputs.py speech, durations.json of
# A's run files) through the `folder` backend. A's score_tts scores the first 20 utterances of a folder
# (table.py extends each job to its whole folder); B's scores whole folders, its score_tts_cpu jobs (no
# GPU) with CPU_JOB_THREADS threads each (default 4). B fine-tunes 1,200 steps per model (patience above
# the step count: random speech cannot show real early stopping, so none stops early), stacked by
# speaker, and evaluates by speaker. Snakemake is stopped once BUDGET_S seconds have passed.
#
# Before either, here: `python bench/workflow/grid_slice/inputs.py carry` (.carry_grid,
# .carry_grid_ckpt) and the wheels the GPU machine lacks: .whl_grid (snakemake, soundfile, librosa,
# speechmos and DistillMOS without the model files they do not load), .whl_grid_tts (coqui-tts,
# speechbrain, openai-whisper, Resemblyzer, jiwer; torchcodec, which coqui-tts asks for though the
# workflow reads audio with soundfile), .whl_grid_eval (pesq, pystoi). Carried (64 MiB in all):
#   A: .whl_grid .whl_grid_tts .carry_grid
#   B: .whl_grid .whl_grid_tts .whl_grid_eval .carry_grid/F0 .carry_grid/VirtualM3 .carry_grid_ckpt
# The full part installs one folder of wheels that wheels.sh builds (.whl_grid: all of the above, with
# Resemblyzer's and DistillMOS's weights left out and written there as random weights by inputs.py
# weights) and carries .whl_grid .carry_grid .carry_grid_ckpt.
#
# SMOKE=1 (full part only) runs here, on the CPU, with this environment's packages, the tests' tiny models
# and a few sentences, utterances and steps: the run's mechanics and its report, not its figures.
#
# Run files go to $OUT (else bench/runs/<date>_h200/grid_slice/): run_<part>.log, snakemake_<part>.log,
# stages_<part>.json and table_<part>.txt (table.py collect), nvidia_smi_<part>.csv (0.5 s samples),
# logs_<part>.tar.gz (job logs, benchmarks, scores, training logs), and after A durations.json.
# `python bench/workflow/grid_slice/table.py report stages_tts.json stages_pipeline.json` prints the
# table of both parts and the projection to 20 speakers.
set -uo pipefail
part=${1:?usage: run.sh tts|pipeline|full}
budget=${BUDGET_S:-540}   # seconds from the start after which snakemake is stopped (the call's limit is 600)
start=$(date +%s)
out=${OUT:-bench/runs/$(date -u +%F)_h200/grid_slice}
mkdir -p "$out"
here=bench/workflow/grid_slice
work=.gridslice
exec > >(tee "$out/run_$part.log") 2>&1
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

smoke=${SMOKE:-0}
wheels=(.whl_grid/*.whl)
[ "$part" = full ] || wheels+=(.whl_grid_tts/*.whl)
[ "$part" = pipeline ] && wheels+=(.whl_grid_eval/*.whl)
if [ "$smoke" = 1 ]; then
  [ "$part" = full ] || { echo "SMOKE=1: the full part only"; exit 2; }
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "${wheels[@]}" || exit 1
  export PYTHONPATH=/tmp/site
  if [ "$part" = full ]; then python3 $here/inputs.py weights || exit 1; fi
fi
export GENDA_JOBS_PER_GPU=4
[ "$smoke" = 1 ] && stamp "this environment's packages (SMOKE=1)" || stamp "wheels installed"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc

rm -rf "$work" /tmp/genda-pse-gpus
mkdir -p "$work"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
  > "$out/nvidia_smi_$part.csv" 2>&1 &
sampler=$!
python3 $here/inputs.py generalist "$work/generalist_medium.pt" || exit 1
# --set-threads here replaces the profile's whole set-threads: pass the profile's own (read as snakemake
# reads it, with yte) beside score_tts_cpu's
profile_threads=$(python3 -c '
import yte
with open("profiles/default/config.yaml") as f:
    print(" ".join(f"{rule}={n}" for rule, n in yte.process_yaml(f)["set-threads"].items()))') || exit 1
smk=(python3 -m snakemake --snakefile Snakefile --configfile $here/config_$part.yaml --directory "$work"
     --cores all --scheduler greedy --set-threads score_tts_cpu=${CPU_JOB_THREADS:-4} $profile_threads)
[ "$part" = full ] && smk+=(--keep-going)
if [ "$smoke" = 1 ]; then  # a second config file, laid over the first
  printf '%s\n' 'data_sizes: {6min: {train: 2, val: 1}, 30min: {train: 3, val: 1}}' \
    'finetune: {max_steps: 2, val_every: 1, batch_size: 2, crop_seconds: 1.0}' 'tts_scoring: {max_utterances: 2}' 'evaluation: {max_utterances: 2}' \
    > "$work/smoke.yaml"
  smk+=(--configfile $here/config_$part.yaml "$work/smoke.yaml")
fi
run_snakemake() {  # TARGETS...: one snakemake run, stopped once the budget is spent
  local left=$(( budget - ($(date +%s) - start) ))
  [ "$left" -gt 20 ] || { echo "no time left for: $*"; return 1; }
  timeout --signal=TERM --kill-after=15 "$left" "${smk[@]}" -- "$@" >> "$out/snakemake_$part.log" 2>&1
  echo "snakemake exit $? ($# targets)"
}
systems=(yourtts speecht5 xtts)
speaker_targets() {  # SPEAKER: its TTS scores and its evaluations of every condition and model size
  [ "$1" = VirtualM3 ] || echo "results/tts_scores/gt/$1.json"
  for s in "${systems[@]}"; do echo "results/tts_scores/$s/$1.json"; done
  for model in tiny small medium; do
    echo "results/eval/$model/generalist/$1.csv"
    [ "$1" = VirtualM3 ] || echo "results/eval/$model/gt/6min/$1.csv"
    for s in "${systems[@]}"; do for size in 6min 30min; do echo "results/eval/$model/$s/$size/$1.csv"; done; done
  done
}
if [ "$part" = full ]; then
  tiny=(); [ "$smoke" = 1 ] && tiny=(--tiny)
  python3 $here/inputs.py models "$work/models" "${tiny[@]}" || exit 1
  mapfile -t targets < <(for spk in ${SPEAKERS:-F0 M1 VirtualM3}; do speaker_targets $spk; done)
  stamp "inputs built"
  run_snakemake "${targets[@]}"
elif [ "$part" = tts ]; then
  python3 $here/inputs.py models "$work/models" || exit 1
  targets=(results/tts_scores/gt/F0.json results/tts_scores/gt/M1.json)
  for s in "${systems[@]}"; do for spk in F0 M1 VirtualM3; do targets+=("results/tts_scores/$s/$spk.json"); done; done
  stamp "inputs built"
  run_snakemake "${targets[@]}"
else
  python3 $here/inputs.py models "$work/models" --only yourtts speecht5_tts speecht5_hifigan xvector whisper \
    || exit 1
  durations=${DURATIONS:-$(ls bench/runs/*/grid_slice/durations.json | tail -1)}
  python3 $here/inputs.py speech "$work/speech" --durations "$durations" --systems xtts --speakers F0 VirtualM3 \
    || exit 1
  stamp "inputs built"
  # speaker by speaker (SPEAKERS), so that one speaker's stages all finish before the next one starts
  for spk in ${SPEAKERS:-F0 VirtualM3}; do
    mapfile -t targets < <(speaker_targets "$spk")
    stamp "snakemake: $spk"
    run_snakemake "${targets[@]}"
  done
fi
stamp "snakemake done"
kill $sampler
grep -h "Error\|error:" "$work"/logs/*/*.log "$work"/logs/*/*/*.log "$work"/logs/*/*/*/*.log 2>/dev/null \
  | cut -c1-300 | sort | uniq -c | head -20
extra=()
[ "$part" = tts ] && extra=(--durations-out "$out/durations.json")
python3 $here/table.py collect --work "$work" --part "$part" --out "$out/stages_$part.json" \
  --nvidia-smi "$out/nvidia_smi_$part.csv" --sheet "$here/$(sed -n 's|^speakers: .*/||p' $here/config_$part.yaml)" \
  "${extra[@]}" | tee "$out/table_$part.txt"
(cd "$work" && tar -czf - logs benchmarks $(ls -d results/tts_scores results/eval 2>/dev/null) \
  $(find results/finetune -name training_log.csv 2>/dev/null)) > "$out/logs_$part.tar.gz"
stamp "end"
touch "$out/done_$part"
