#!/usr/bin/env bash
# One speaker, gt + world_clone speech, tiny ConvTasNet: fine-tune and evaluate on the GPU through
# the workflow's own rules. The speaker's data and synthetic speech are made on the CPU first:
#   snakemake --cores 1 --configfile bench/finetune/gpu_slice/config.yaml --directory .devslice \
#       results/speech/worldclone/spk01
# then this script (on the GPU machine, from the repository root) runs the rest.
set -euo pipefail
# run files under bench/runs/<UTC date>_<machine>/gpu_slice/ (OUT overrides), the machine as its GPU's model
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z' 'a-z' | grep -o '[a-z]\+[0-9]\+' | head -1)
out=${OUT:-bench/runs/$(date -u +%F)_${gpu:-gpu}/gpu_slice}
mkdir -p "$out"
smk=(python -m snakemake --snakefile Snakefile --configfile bench/finetune/gpu_slice/config.yaml
     --directory .devslice --scheduler greedy)
targets=(results/eval/tiny/generalist/spk01.json results/eval/tiny/gt/40utt/spk01.json
         results/eval/tiny/worldclone/40utt/spk01.json)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# the CPU-made inputs are up to date: mark them so, then run only the GPU rules
"${smk[@]}" --cores 1 --touch results/speech/worldclone/spk01 >/dev/null 2>&1 || true
start=$(date +%s)
"${smk[@]}" --cores 4 --resources gpu=4 --rerun-triggers mtime \
  --allowed-rules finetune evaluate_finetuned evaluate_generalist score_mixtures -- "${targets[@]}"
echo "slice wall time: $(( $(date +%s) - start )) s"
for cond in gt worldclone; do
  d=.devslice/results/finetune/tiny/$cond/40utt/spk01
  cp "$d/training_log.csv" "$out/training_log_$cond.csv"
  cp "$d/loss.png" "$out/loss_$cond.png"
  grep -h -E "job on GPU|device|steps/s|step " .devslice/logs/finetune/tiny/$cond/40utt/spk01.log | tail -5
done
for t in "${targets[@]}"; do echo "== $t"; cat ".devslice/$t"; echo; done
cat .devslice/benchmarks/finetune/tiny/*/40utt/spk01.tsv
