#!/usr/bin/env bash
# Several fine-tunes sharing one GPU through the workflow's GPU picker: the same four fine-tunes and
# five evaluations with GENDA_JOBS_PER_GPU=1 and then 4 (the default profile's gpu resource is the
# number of slots). Logs each job's "job on GPU k (slot s)" line, samples nvidia-smi every second,
# and prints the wall time of each run. Inputs as for run.sh (made on the CPU first).
set -euo pipefail
source "$(dirname "$0")/slots_common.sh"
for jobs in 1 4; do
  rm -rf .devslice/results/finetune .devslice/results/eval .devslice/logs/finetune .devslice/logs/evaluate \
    .devslice/results/*.resume.pt /tmp/genda-pse-gpus
  (while true; do nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader; \
     nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | wc -l; sleep 1; done) \
     > "$out/nvidia_smi_jobs$jobs.txt" 2>&1 &
  sampler=$!
  start=$(date +%s.%N)
  GENDA_JOBS_PER_GPU=$jobs "${smk[@]}" "${gpu_rules[@]}" -- "${targets[@]}" > "$out/snakemake_jobs$jobs.log" 2>&1
  end=$(date +%s.%N)
  kill $sampler
  echo "GENDA_JOBS_PER_GPU=$jobs: wall $(python -c "print(round($end - $start, 1))") s"
  grep -h "job on GPU" .devslice/logs/finetune/tiny/*/*/spk01.log .devslice/logs/evaluate/tiny/*/spk01.log \
    .devslice/logs/evaluate/tiny/*/*/spk01.log 2>/dev/null | sed 's/^[0-9-]* //' | sort | head -12
  echo "max processes on the GPU at once: $(grep -E '^[0-9]+$' "$out/nvidia_smi_jobs$jobs.txt" | sort -n | tail -1)"
  grep -h "best step" .devslice/logs/finetune/tiny/*/*/spk01.log
done
