# Sourced by slots.sh, stacked.sh and two_gpus.sh: the slice of config_slots.yaml (one speaker, gt and
# world_clone x 20 and 40 training utterances, tiny) in .devslice. Sets `out` (the run folder), `smk` (the snakemake
# command), `gpu_rules` (--allowed-rules of the per-condition GPU part) and `targets` (the five
# evaluations), and marks the CPU-made speech up to date.
# run files under bench/runs/<UTC date>_<machine>/gpu_slice/ (OUT overrides), the machine as its GPU's model
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z' 'a-z' | grep -o '[a-z]\+[0-9]\+' | head -1)
out=${OUT:-bench/runs/$(date -u +%F)_${gpu:-gpu}/gpu_slice}
mkdir -p "$out"
smk=(python -m snakemake --snakefile Snakefile --configfile bench/finetune/gpu_slice/config_slots.yaml
     --directory .devslice --scheduler greedy --cores 16 --rerun-triggers mtime)
gpu_rules=(--allowed-rules finetune evaluate_finetuned evaluate_generalist score_mixtures)
targets=()
for c in gt worldclone; do for s in 20utt 40utt; do targets+=("results/eval/tiny/$c/$s/spk01.json"); done; done
targets+=(results/eval/tiny/generalist/spk01.json)
"${smk[@]}" --touch results/speech/worldclone/spk01 >/dev/null 2>&1 || true
