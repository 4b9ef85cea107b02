#!/usr/bin/env bash
# One speaker's four fine-tunes (gt and world_clone x 20 and 40 utterances, tiny, config_slots.yaml)
# and five evaluations through the rules, twice: as four `finetune` jobs sharing the GPU
# (GENDA_JOBS_PER_GPU=4), then as one `finetune_stacked` job (finetune_stacking by speaker, TF32,
# crops mixed on the GPU). Prints each run's wall time and each fine-tune's best step and validation
# SDR. Inputs as for run.sh (made on the CPU first).
set -euo pipefail
source "$(dirname "$0")/slots_common.sh"
for mode in processes stacked; do
  rm -rf .devslice/results/finetune .devslice/results/eval .devslice/logs/finetune* .devslice/logs/evaluate \
    .devslice/results/*.resume.pt /tmp/genda-pse-gpus
  if [ "$mode" = stacked ]; then
    extra=(--config "finetune_stacking={by: speaker, precision: tf32, batches: device}"
           --allowed-rules finetune_stacked evaluate_finetuned evaluate_generalist score_mixtures)
  else
    extra=("${gpu_rules[@]}")
  fi
  start=$(date +%s.%N)
  GENDA_JOBS_PER_GPU=4 "${smk[@]}" "${extra[@]}" -- "${targets[@]}" > "$out/snakemake_$mode.log" 2>&1
  end=$(date +%s.%N)
  echo "$mode: wall $(python -c "print(round($end - $start, 1))") s"
  grep -h "best step\|job on GPU" -r .devslice/logs/finetune* | sed 's/^[0-9-]* [0-9:,]* //' | sort
  cat .devslice/benchmarks/finetune*/tiny/*.tsv .devslice/benchmarks/finetune*/tiny/*/*/*.tsv 2>/dev/null \
    | grep -v '^s' || true
  for c in gt worldclone; do for s in 20utt 40utt; do
    python -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: round(v, 3) for k, v in d.get('mean', d).items() if isinstance(v, float)})" \
      ".devslice/results/eval/tiny/$c/$s/spk01.json" 2>/dev/null || true
  done; done
done
