#!/usr/bin/env bash
# A stacked fine-tune with a GPU slot left beside it, against one that takes the whole GPU, through the rules on
# one GPU: two demo speakers' GPU jobs of the paper grid's kinds (config_beside.yaml: stacks of tiny, small and
# medium, TTS scoring with a Whisper of large-v3's size, evaluations), 4 jobs per GPU, run twice from one prepared
# folder: GENDA_STACK_SLOTS=4 (the baseline: a stack has the GPU to itself) and GENDA_STACK_SLOTS=3 (the
# candidate: one slot beside it). ARMS (default "4:4 4:3", JOBS_PER_GPU:STACK_SLOTS each; an arm whose stack
# takes the whole GPU is the report's baseline) runs other arms in that order; KEEP_PREP=1 reuses a prepared
# folder that an earlier run left in .beside/. Each arm
# compiles its Triton kernels afresh. Prints the arms' GPU jobs, the walls, the ratio of each arm's to the
# first's, the stacks' own time in each and a verdict (beside_report.py), again after every arm.
#
# Here, once (the device has Python 3.12 and no flite), into .whl_beside/ (.git/info/exclude ignores it):
#   - wheels the GPU machine lacks: snakemake and its needs, soundfile, pesq, pystoi, pyworld, openai-whisper,
#     Resemblyzer (with webrtcvad-wheels) and librosa's needs, jiwer (pip download for cp312; pesq, pyworld,
#     openai-whisper and connection-pool built with `python3.12 -m pip wheel --no-deps`);
#   - deb/: Debian's flite and libflite1 (`apt-get download flite libflite1`), unpacked there into /tmp/flite;
#   - ckpt/: the challenge's tiny and small generalists (../shared/genda25/checkpoints/).
# On the GPU machine: bash bench/finetune/gpu_slice/beside.sh (carry .whl_beside). Run files under $OUT, else
# bench/runs/<UTC date>_h200/beside/: beside.log, snakemake_prep.log, nvidia_smi.csv, report.txt and
# logs_<arm>.tar.gz (its snakemake log, job logs and benchmark files).
set -euo pipefail
here=bench/finetune/gpu_slice
work=.beside
out=${OUT:-bench/runs/$(date -u +%F)_h200/beside}
mkdir -p "$out"
exec > >(tee "$out/beside.log") 2>&1
begin=$(date +%s)
stamp() { echo "[$(( $(date +%s) - begin )) s] $*"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl_beside/*.whl
for deb in .whl_beside/deb/*.deb; do dpkg -x "$deb" /tmp/flite; done
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/flite/usr/bin:$PATH
export LD_LIBRARY_PATH=/tmp/flite/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-} GENDA_JOBS_PER_GPU=4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
stamp "wheels and flite in place; $(nproc) CPU cores"

if [ "${KEEP_PREP:-0}" = 1 ] && [ -f "$work/prep/.prepared" ]; then
  rm -rf "$work"/slots* /tmp/genda-pse-gpus
else
  rm -rf "$work" /tmp/genda-pse-gpus
fi
mkdir -p "$work/prep"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
  > "$out/nvidia_smi.csv" 2>&1 &
sampler=$!
smk=(python3 -m snakemake --snakefile Snakefile --configfile $here/config_beside.yaml --scheduler greedy --cores all)
speakers=(spk01 spk02)
prep=() targets=()
for s in "${speakers[@]}"; do
  prep+=("results/speech/worldclone/$s" "results/eval/mixtures/$s.csv")
  for src in gt worldclone; do
    prep+=("results/tts_scores/$src/$s.cpu.json")
    targets+=("results/tts_scores/$src/$s.json")
  done
  for m in tiny small medium; do
    targets+=("results/eval/$m/generalist/$s.csv")
    for src in gt worldclone; do for size in 20utt 40utt; do targets+=("results/eval/$m/$src/$size/$s.csv"); done; done
  done
done
# the CPU jobs (the speakers' worlds, cloning, synthesis, the mixtures' and Resemblyzer's scores) once
if [ ! -f "$work/prep/.prepared" ]; then
  python3 bench/workflow/grid_slice/inputs.py generalist "$work/generalist_medium.pt"
  python3 bench/workflow/grid_slice/inputs.py models "$work/models" --only whisper
  "${smk[@]}" --directory "$work/prep" -- "${prep[@]}" > "$out/snakemake_prep.log" 2>&1
  touch "$work/prep/.prepared"
fi
stamp "prepared: ${#targets[@]} targets"

arms=()
for pair in ${ARMS:-4:4 4:3}; do
  per_gpu=${pair%:*} slots=${pair#*:} name=slots${pair/:/_}
  arm="$work/$name"
  cp -a "$work/prep" "$arm"
  export TRITON_CACHE_DIR=/tmp/triton_$name
  rm -rf "$TRITON_CACHE_DIR" /tmp/genda-pse-gpus
  start=$(date +%s.%N)
  status=0
  GENDA_JOBS_PER_GPU=$per_gpu GENDA_STACK_SLOTS=$slots "${smk[@]}" --directory "$arm" -- "${targets[@]}" \
    > "$arm/snakemake.log" 2>&1 || status=$?
  wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  stamp "GENDA_JOBS_PER_GPU=$per_gpu GENDA_STACK_SLOTS=$slots: snakemake exit $status in $wall s"
  grep -h "job on GPU" "$arm"/logs/finetune_stacked/*/*.log | sort | uniq -c
  entry="$arm:GENDA_JOBS_PER_GPU=$per_gpu GENDA_STACK_SLOTS=$slots:$start:$wall"
  # the baseline (a stack on the whole GPU) first in the report, whatever the order of the runs
  if [ "$per_gpu" = "$slots" ]; then arms=("$entry" "${arms[@]}"); else arms+=("$entry"); fi
  (cd "$arm" && tar -czf - snakemake.log logs benchmarks) > "$out/logs_$name.tar.gz"
  python3 $here/beside_report.py "${arms[@]}" --nvidia-smi "$out/nvidia_smi.csv" > "$out/report.txt"
done
kill $sampler
cat "$out/report.txt"
stamp "end"
