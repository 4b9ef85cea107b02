#!/usr/bin/env bash
# One speaker's four fine-tunes (config_slots.yaml: gt and world_clone x 20 and 40 utterances, tiny,
# 300 steps) as one `finetune_stacked` job (TF32; on a GPU the fused kernels and the step as a CUDA
# graph), through the rules:
#   1. uninterrupted, with the five evaluations;
#   2. the same job sent SIGTERM once its training passed STOP_AT steps, then run again: it continues
#      from the stack's resume file; both runs' best steps and validation SDRs are printed;
#   3. the five evaluations alone (the fine-tunes of run 2 kept), with 1 and then 4 jobs per GPU.
# Inputs as for run.sh (made on the CPU first).
set -euo pipefail
source "$(dirname "$0")/slots_common.sh"
STOP_AT=${STOP_AT:-100}
stack=(--config "finetune_stacking={by: speaker, precision: tf32, batches: device}")
stack_rules=(--allowed-rules finetune_stacked evaluate_finetuned evaluate_generalist score_mixtures)
log=.devslice/logs/finetune_stacked/tiny/spk01.log
resume=.devslice/results/finetune/tiny/spk01.stack.resume.pt
seconds() { python -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$@"; }
clean() {
  rm -rf .devslice/results/finetune .devslice/results/eval .devslice/logs/finetune* .devslice/logs/evaluate \
    /tmp/genda-pse-gpus
}
summary() {
  grep -h "fine-tuning\|best step\|resumed from\|resume file\|SIGTERM\|job on GPU\|wrote" "$log" || true
}

uninterrupted() {  # LABEL NAME CONFIG...: the slice from scratch, its wall time, the stacked job's summary
  local label=$1 name=$2
  shift 2
  clean
  start=$(date +%s.%N)
  GENDA_JOBS_PER_GPU=4 "${smk[@]}" "$@" "${stack_rules[@]}" -- "${targets[@]}" > "$out/snakemake_$name.log" 2>&1
  echo "$label: wall $(seconds "$start" "$(date +%s.%N)") s"
  summary
  tr '\r' '\n' < "$log" | grep '^train:' | tail -1 || true
  cat .devslice/benchmarks/finetune_stacked/tiny/spk01.tsv || true
  cp "$log" "$out/finetune_stacked_$name.log"
}
uninterrupted "1. uninterrupted" uninterrupted "${stack[@]}"

clean
start=$(date +%s.%N)
GENDA_JOBS_PER_GPU=4 "${smk[@]}" "${stack[@]}" "${stack_rules[@]}" -- "${targets[@]}" > "$out/snakemake_killed.log" 2>&1 &
runner=$!
stopped=no
for _ in $(seq 1 600); do
  sleep 0.2
  step=$(tr '\r' '\n' 2>/dev/null < "$log" | grep '^train:' | grep -o ' [0-9]*/[0-9]* \[' | tail -1 \
    | grep -o '^ [0-9]*' | tr -d ' ' || true)
  if [ -n "$step" ] && [ "$step" -ge "$STOP_AT" ]; then
    for pid in $(pgrep -f "workflow_scripts.finetune_stacked"); do  # the python process, not its shell
      case "$(cat /proc/"$pid"/comm 2>/dev/null)" in python*) kill -TERM "$pid" && stopped="yes, at step $step (tqdm)";; esac
    done
    break
  fi
done
wait "$runner" || true
echo "2a. SIGTERM sent: $stopped; resume file: $(ls -l "$resume" 2>/dev/null | awk '{print $5 " bytes"}' || echo none)"
summary
cp "$log" "$out/finetune_stacked_killed.log"
GENDA_JOBS_PER_GPU=4 "${smk[@]}" "${stack[@]}" "${stack_rules[@]}" -- "${targets[@]}" > "$out/snakemake_resumed.log" 2>&1
echo "2b. run again: wall of both $(seconds "$start" "$(date +%s.%N)") s; resume file left: $(ls "$resume" 2>/dev/null || echo none)"
summary
cp "$log" "$out/finetune_stacked_resumed.log"

for jobs in 1 4; do
  rm -rf .devslice/results/eval .devslice/logs/evaluate /tmp/genda-pse-gpus
  start=$(date +%s.%N)
  GENDA_JOBS_PER_GPU=$jobs "${smk[@]}" "${stack[@]}" "${stack_rules[@]}" -- "${targets[@]}" \
    > "$out/snakemake_eval_jobs$jobs.log" 2>&1
  echo "3. evaluations alone, GENDA_JOBS_PER_GPU=$jobs: wall $(seconds "$start" "$(date +%s.%N)") s;" \
    "jobs run: $(grep -c '^rule \|^localrule ' "$out/snakemake_eval_jobs$jobs.log")"
done
cat .devslice/benchmarks/evaluate*/tiny/*.tsv .devslice/benchmarks/evaluate*/tiny/*/*/*.tsv 2>/dev/null | grep -v '^s' || true
