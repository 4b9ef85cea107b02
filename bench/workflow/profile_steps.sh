#!/usr/bin/env bash
# Sample every step process of a snakemake run with py-spy (50 Hz, collapsed stacks), then report
# where the time went by rule, function and imported package (bench/workflow/profile_report.py).
#
#   pip install py-spy   # into any folder; PYSPY names its binary
#   PYSPY=/path/to/py-spy bash bench/workflow/profile_steps.sh OUT_DIR [snakemake arguments...]
#
# Run in a working folder whose outputs are cleared (`make clean`) and with `.venv` active; the
# steps run as the rules run them (`python -m workflow_scripts.<step>`), each under py-spy.
set -euo pipefail
out=${1:?usage: profile_steps.sh OUT_DIR [snakemake arguments...]}; shift
pyspy=${PYSPY:-$(command -v py-spy || true)}
[ -x "$pyspy" ] || { echo "py-spy not found: install it and set PYSPY" >&2; exit 2; }
python=$(command -v python)
rate=50  # samples a second, read back by profile_report.py --rate-hz
mkdir -p "$out/stacks" "$out/shim"
out=$(cd "$out" && pwd)
cat > "$out/shim/python" <<SHIM
#!/usr/bin/env bash
if [ "\${1:-}" = "-m" ] && [[ "\${2:-}" == workflow_scripts.* ]]; then
  exec "$pyspy" record -r $rate -f raw --nonblocking -o "$out/stacks/\${2#workflow_scripts.}.\$\$.txt" -- "$python" "\$@"
fi
exec "$python" "\$@"
SHIM
chmod +x "$out/shim/python"
start=$(date +%s)
PATH="$out/shim:$PATH" snakemake --cores all "$@" > "$out/snakemake.log" 2>&1
echo "snakemake wall time: $(( $(date +%s) - start )) s" | tee "$out/report.txt"
python "$(dirname "$0")/profile_report.py" "$out/stacks" --rate-hz "$rate" | tee -a "$out/report.txt"
