#!/usr/bin/env bash
# A stacked fine-tune with a GPU slot left beside it, against one that takes the whole GPU, through the rules on
# one GPU: two demo speakers' GPU jobs of the paper grid's kinds (config_beside.yaml: stacks of tiny, small and
# medium, TTS scoring with a Whisper of large-v3's size, evaluations), 4 jobs per GPU, run twice from one prepared
# folder: GENDA_STACK_SLOTS=4 (the baseline: a stack has the GPU to itself) and GENDA_STACK_SLOTS=3 (the
# candidate: one slot beside it). Each arm compiles its Triton kernels afresh. Prints both arms' GPU jobs, the
# walls, their ratio, the stacks' own time in each and a verdict (beside_report.py).
#
# Here, once (the device has Python 3.12 and no flite), into .whl_beside/ (.git/info/exclude ignores it):
#   - wheels the GPU machine lacks: snakemake and its needs, soundfile, pesq, pystoi, pyworld, openai-whisper,
#     Resemblyzer (with webrtcvad-wheels) and librosa's needs, jiwer (pip download for cp312; pesq, pyworld,
#     openai-whisper and connection-pool built with `python3.12 -m pip wheel --no-deps`);
#   - deb/: Debian's flite and libflite1 (`apt-get download flite libflite1`), unpacked there into /tmp/flite;
#   - ckpt/: the challenge's tiny and small generalists (../shared/genda25/checkpoints/).
# On the GPU machine: bash bench/finetune/gpu_slice/beside.sh (carry .whl_beside). Run files under $OUT, else
# bench/runs/<UTC date>_h200/beside/: beside.log, snakemake_<arm>.log, nvidia_smi.csv, logs_<arm>.tar.gz.
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

rm -rf "$work" /tmp/genda-pse-gpus
mkdir -p "$work/prep"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
  > "$out/nvidia_smi.csv" 2>&1 &
sampler=$!
python3 bench/workflow/grid_slice/inputs.py generalist "$work/generalist_medium.pt"
python3 bench/workflow/grid_slice/inputs.py models "$work/models" --only whisper
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
"${smk[@]}" --directory "$work/prep" -- "${prep[@]}" > "$out/snakemake_prep.log" 2>&1
stamp "prepared: ${#targets[@]} targets"

arms=()
for slots in 4 3; do
  arm="$work/slots$slots"
  cp -a "$work/prep" "$arm"
  export TRITON_CACHE_DIR=/tmp/triton_slots$slots
  rm -rf "$TRITON_CACHE_DIR" /tmp/genda-pse-gpus
  start=$(date +%s.%N)
  status=0
  GENDA_STACK_SLOTS=$slots "${smk[@]}" --directory "$arm" -- "${targets[@]}" > "$out/snakemake_slots$slots.log" 2>&1 \
    || status=$?
  wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  stamp "GENDA_STACK_SLOTS=$slots: snakemake exit $status in $wall s"
  grep -h "job on GPU" "$arm"/logs/finetune_stacked/*/*.log | sort | uniq -c
  arms+=("$arm:GENDA_STACK_SLOTS=$slots:$start:$wall")
  (cd "$arm" && tar -czf - logs benchmarks) > "$out/logs_slots$slots.tar.gz"
done
kill $sampler
python3 $here/beside_report.py "${arms[@]}" --nvidia-smi "$out/nvidia_smi.csv" | tee "$out/report.txt"
stamp "end"
