#!/usr/bin/env bash
# run.sh full on the lent GPU machine, whose calls last 10 minutes at most: the first call starts it in
# its own process session, from a copy of the checkout in /tmp (later calls bring the working tree again,
# the run's files stay apart), and follows it; each later call, made while the machine is still held,
# follows it on. Every call ends by copying the run files there are into $OUT: run_full.log,
# snakemake_full.log, console.txt, nvidia_smi_full.csv and, once the run is done, stages_full.json,
# table_full.txt and logs_full.tar.gz; before that, logs_partial.tar.gz (the job logs and benchmark
# files so far).
#
#   bash bench/workflow/grid_slice/device.sh start SECONDS    # carry .whl_grid .carry_grid .carry_grid_ckpt
#   bash bench/workflow/grid_slice/device.sh follow SECONDS
#
# BUDGET_S (start only): seconds after which run.sh stops snakemake (default 1500).
set -uo pipefail
what=${1:?usage: device.sh start|follow SECONDS}
seconds=${2:?usage: device.sh start|follow SECONDS}
run=/tmp/grid_full
repo=/tmp/grid_full_repo
begin=$(date +%s)
if [ "$what" = start ]; then
  rm -rf "$run" "$repo" /tmp/site
  mkdir -p "$run" "$repo"
  tar -cf - --exclude=./.git --exclude=./.gridslice . | tar -xf - -C "$repo"
  (cd "$repo" && { OUT=$run BUDGET_S=${BUDGET_S:-1500} setsid nohup bash bench/workflow/grid_slice/run.sh full \
    > "$run/console.txt" 2>&1 < /dev/null & echo $! > "$run/pid"; })
fi
[ -d "$run" ] || { echo "no run in $run: this machine did not start one"; exit 1; }
running() { kill -0 "$(cat "$run/pid" 2>/dev/null)" 2>/dev/null; }
while [ ! -e "$run/done_full" ] && running && [ $(( $(date +%s) - begin )) -lt "$seconds" ]; do
  sleep 15
  steps=$(grep -o '[0-9]* of [0-9]* steps ([0-9]*%) done' "$run/snakemake_full.log" 2>/dev/null | tail -1)
  echo "[$(( $(date +%s) - begin )) s] ${steps:-no step done}; $(tail -n 1 "$run/run_full.log" 2>/dev/null | cut -c1-160)"
done
if [ -e "$run/done_full" ]; then echo "run done"
elif running; then echo "run still going"
else echo "run.sh ended before its end (console.txt says why):"; tail -n 20 "$run/console.txt"; fi
grep -h "Error in rule\|exit [0-9]" "$run/snakemake_full.log" "$run/run_full.log" 2>/dev/null | sort | uniq -c | head
if [ -n "${OUT:-}" ]; then
  for f in run_full.log snakemake_full.log console.txt nvidia_smi_full.csv stages_full.json table_full.txt \
           logs_full.tar.gz; do
    [ -e "$run/$f" ] && cp "$run/$f" "$OUT/"
  done
  [ -e "$run/done_full" ] || (cd "$repo/.gridslice" 2>/dev/null && tar -czf "$OUT/logs_partial.tar.gz" logs benchmarks)
fi
exit 0
