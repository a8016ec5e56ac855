#!/usr/bin/env bash
# Engine benchmark, side by side with PyTorch CPU on the same machine, threads and weights.
#   tools/bench.sh [threads]        (needs torch: tools/install-python.sh, or pip install -e 'python[train]')
# Builds rtbench (release), runs it (it saves its decoder weights), runs python/scripts/bench_torch.py on
# those weights with PyTorch's fused attention (sdpa) and with the eager reference, and prints
# the table with the speed ratios (PyTorch time / reptok time: > 1 means reptok is faster).
# The machines here are noisy VMs (the same command varies by +-30%), so the three programs run
# in ROUNDS alternating rounds (default 3) and each row takes its fastest median.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"   # the package, from this checkout
threads="${1:-2}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
rounds="${ROUNDS:-3}"
swift build -c release --product rtbench >/dev/null
.build/release/rtbench --threads "$threads" --runs 1 --json --save-weights "$tmp/w.safetensors" > /dev/null
for r in $(seq "$rounds"); do
  .build/release/rtbench --threads "$threads" --json > "$tmp/swift.$r.json"
  python3 python/scripts/bench_torch.py "$tmp/w.safetensors" --threads "$threads" --attention sdpa > "$tmp/sdpa.$r.json"
  python3 python/scripts/bench_torch.py "$tmp/w.safetensors" --threads "$threads" --attention eager > "$tmp/eager.$r.json"
done
python3 - "$tmp" "$rounds" <<'PY'
import json, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def best(kind):
    runs = [json.load(open(f"{d}/{kind}.{r}.json")) for r in range(1, rounds + 1)]
    out = dict(runs[0]); rows = {}
    for run in runs:
        for row in run["rows"]:
            if row["name"] not in rows or row["seconds"] < rows[row["name"]]["seconds"]:
                rows[row["name"]] = row
    out["rows"] = [rows[r["name"]] for r in runs[0]["rows"]]
    if kind == "swift":
        out["sgemm_gflops_decoder_shapes"] = max(r["sgemm_gflops_decoder_shapes"] for r in runs)
    return out
sw = best("swift"); sd = best("sdpa"); eg = best("eager")
t_sd = {r["name"]: r["seconds"] for r in sd["rows"]}; t_eg = {r["name"]: r["seconds"] for r in eg["rows"]}
print(f"threads {sw['threads']}, torch {sd['torch']}, sgemm on the decoder's shapes {sw['sgemm_gflops_decoder_shapes']:.1f} GFLOP/s")
print(f"| measurement | reptok ms | GFLOP/s | % of sgemm | torch sdpa ms | ratio | torch eager ms | ratio |")
print(f"| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sw["rows"]:
    n = r["name"]; ms = r["seconds"] * 1e3
    print(f"| {n} | {ms:.1f} | {r['gflops']:.1f} | {100*r['gflops']/sw['sgemm_gflops_decoder_shapes']:.0f}% | "
          f"{t_sd[n]*1e3:.1f} | {t_sd[n]/r['seconds']:.2f}x | {t_eg[n]*1e3:.1f} | {t_eg[n]/r['seconds']:.2f}x |")
PY
