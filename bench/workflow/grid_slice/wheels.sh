#!/usr/bin/env bash
# Here (with network to the package registries), once: the wheels that run.sh installs on the GPU
# machine, for Python 3.12 on x86-64, into .whl_grid/ (ignored by git through .git/info/exclude). The
# GPU machine has torch, transformers, numpy, scipy, onnxruntime and the rest of its image (the device
# tool's KINDS.md); these are what the workflow needs beyond it: snakemake and its plugins, soundfile,
# librosa, coqui-tts, speechbrain, openai-whisper, Resemblyzer, speechmos, DistillMOS, jiwer, pesq,
# pystoi and their own needs, at the versions of this checkout's environment (pyproject.toml).
#
# A device call carries 64 MiB at most, so three wheels travel without files that the slice does not
# load or that it replaces: speechmos keeps DNSMOS (dnsmos_models/), not AECMOS, PLCMOS or pDNSMOS;
# xls-r-sqa keeps its code, not its models (DistillMOS reads none of them); Resemblyzer and DistillMOS
# travel without their weights, which `inputs.py weights` writes there as random weights of the same
# shapes (the work per utterance is the architecture's, as for the slice's other random models).
#
#   bash bench/workflow/grid_slice/wheels.sh [PYTHON312]   # PYTHON312 builds the sdist-only ones
set -euo pipefail
py312=${1:-python3.12}
dest=.whl_grid
rm -rf "$dest" && mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
binary=(
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0
  docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6
  humanfriendly==10.0 immutables==0.21 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
  jupyter-core==5.9.1 nbformat==5.11.1 platformdirs==4.14.9 pydantic==2.14.4 pydantic-core==2.50.5
  referencing==0.37.0 rpds-py==2026.9.1 smart-open==7.7.1 smmap==5.0.3 sqlalchemy==2.0.58 sqlmodel==0.0.37
  tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1 typing-inspection==0.4.5 yte==1.9.4
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 librosa==0.11.0 audioread==3.1.0 decorator==5.3.1
  pooch==1.9.0 soxr==1.1.0
  coqui-tts==0.28.0 coqui-tts-trainer==0.4.0 coqpit-config==0.2.5 anyascii==0.3.3 inflect==7.6.0
  typeguard==4.6.1 jaraco-functools==4.6.0 more-itertools==11.2.1 ko-speech-tools==0.1.0
  monotonic-alignment-search==0.2.1 num2words==0.5.14 pysbd==0.3.4 torchcodec==0.17.0
  speechbrain==1.1.2 hyperpyyaml==1.2.3 ruamel-yaml==0.18.17 ruamel-yaml-clib==0.2.15
  jiwer==4.0.0 rapidfuzz==3.14.6 resemblyzer==0.1.4 webrtcvad-wheels==2.0.14.post1
  speechmos==0.0.1.1 distillmos==0.9.1 xls-r-sqa==0.1.0 pystoi==0.4.1
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest" "${binary[@]}"
# sdist only (docopt, connection-pool, openai-whisper) or no wheel for this platform (pesq): built here
"$py312" -m pip wheel -q --no-deps -w "$dest" docopt==0.6.2 connection-pool==0.0.3 openai-whisper==20250625 pesq==0.0.4
strip() {  # WHEEL PATTERN...: delete members of a wheel
  local wheel=$1; shift
  zip -q -d "$wheel" "$@"
}
strip "$dest"/speechmos-*.whl 'speechmos/aecmos_models/*' 'speechmos/plcmos_models/*' 'speechmos/pdnsmos_models/*'
strip "$dest"/xls_r_sqa-*.whl 'xls_r_sqa/models/*'
strip "$dest"/distillmos-*.whl 'distillmos/weights/*'
strip "$dest"/[Rr]esemblyzer-*.whl 'resemblyzer/pretrained.pt'
du -sh "$dest"
