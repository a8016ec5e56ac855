#!/usr/bin/env bash
# Engine benchmark, side by side with PyTorch CPU on the same machine, threads and weights.
#   tools/bench.sh [threads]        (needs: pip install torch==2.13.0+cpu safetensors numpy)
# Builds rtbench (release), runs it (it saves its decoder weights), runs tools/bench_torch.py on
# those weights with PyTorch's fused attention (sdpa) and with the eager reference, and prints
# the table with the speed ratios (PyTorch time / reptok time: > 1 means reptok is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
swift build -c release --product rtbench >/dev/null
.build/release/rtbench --threads "$threads" --json --save-weights "$tmp/w.safetensors" > "$tmp/swift.json"
python3 tools/bench_torch.py "$tmp/w.safetensors" --threads "$threads" --attention sdpa > "$tmp/sdpa.json"
python3 tools/bench_torch.py "$tmp/w.safetensors" --threads "$threads" --attention eager > "$tmp/eager.json"
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
sw = json.load(open(f"{d}/swift.json")); sd = json.load(open(f"{d}/sdpa.json")); eg = json.load(open(f"{d}/eager.json"))
t_sd = {r["name"]: r["seconds"] for r in sd["rows"]}; t_eg = {r["name"]: r["seconds"] for r in eg["rows"]}
print(f"threads {sw['threads']}, torch {sd['torch']}, sgemm on the decoder's shapes {sw['sgemm_gflops_decoder_shapes']:.1f} GFLOP/s")
print(f"| measurement | reptok ms | GFLOP/s | % of sgemm | torch sdpa ms | ratio | torch eager ms | ratio |")
print(f"| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sw["rows"]:
    n = r["name"]; ms = r["seconds"] * 1e3
    print(f"| {n} | {ms:.1f} | {r['gflops']:.1f} | {100*r['gflops']/sw['sgemm_gflops_decoder_shapes']:.0f}% | "
          f"{t_sd[n]*1e3:.1f} | {t_sd[n]/r['seconds']:.2f}x | {t_eg[n]*1e3:.1f} | {t_eg[n]/r['seconds']:.2f}x |")
PY
