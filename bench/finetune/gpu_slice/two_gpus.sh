#!/usr/bin/env bash
# The four fine-tunes and five evaluations of config_slots.yaml (one speaker, gt and world_clone x 20
# and 40 utterances, tiny) through the rules with the default profile, one job per GPU, on one GPU
# (CUDA_VISIBLE_DEVICES=0) and then on two. Samples nvidia-smi per GPU every second, prints each run's
# wall time, which GPU each job logged, and the most processes seen on a GPU at once.
# Inputs as for run.sh (made on the CPU first).
set -euo pipefail
source "$(dirname "$0")/slots_common.sh"
nvidia-smi -L
for gpus in 0 0,1; do
  rm -rf .devslice/results/finetune .devslice/results/eval .devslice/logs/finetune .devslice/logs/evaluate \
    .devslice/results/*.resume.pt /tmp/genda-pse-gpus
  tag=gpus${gpus/,/}
  (while true; do echo "$(nvidia-smi --query-compute-apps=gpu_bus_id --format=csv,noheader | sort | uniq -c \
     | tr -s ' \n' '  ')"; sleep 1; done) > "$out/nvidia_smi_$tag.txt" 2>&1 &
  sampler=$!
  start=$(date +%s.%N)
  CUDA_VISIBLE_DEVICES=$gpus GENDA_JOBS_PER_GPU=1 "${smk[@]}" "${gpu_rules[@]}" -- "${targets[@]}" > "$out/snakemake_$tag.log" 2>&1
  end=$(date +%s.%N)
  kill $sampler
  echo "CUDA_VISIBLE_DEVICES=$gpus: wall $(python -c "print(round($end - $start, 1))") s"
  grep -h "job on GPU" .devslice/logs/finetune/tiny/*/*/spk01.log .devslice/logs/evaluate/tiny/*/spk01.log \
    .devslice/logs/evaluate/tiny/*/*/spk01.log 2>/dev/null | sed 's/^[0-9-]* [0-9:,]* //' | sort | uniq -c
  python - "$out/nvidia_smi_$tag.txt" <<'PY'
import collections, sys
most, busy = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    fields = line.split()
    for count, bus in zip(fields[::2], fields[1::2]):
        most[bus] = max(most[bus], int(count))
        busy[bus] += 1
print("most processes on a GPU at once:", dict(most), "| samples with a process, per GPU:", dict(busy))
PY
  grep -h "best step" .devslice/logs/finetune/tiny/*/*/spk01.log
done
