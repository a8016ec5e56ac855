#!/usr/bin/env bash
# Build the libFuzzer target for the .rtk reader and run it.
#
#   Fuzz/run.sh [SECONDS] [libFuzzer flags...]   fuzz for SECONDS (default 60)
#   Fuzz/run.sh --replay                         run every corpus/crash file once (regression)
#   Fuzz/run.sh --make-corpus                    regenerate the seed corpus Fuzz/corpus/
#
# The RepTokFormat sources and the target compile together as one module (libFuzzer brings
# main, hence -parse-as-library); -I Sources/CZstd finds the CZstd module map. New inputs go to
# $FUZZ_WORK (default .build/fuzz, git-ignored), never into the committed seed corpus.
# A crash lands in $FUZZ_WORK/artifacts/: add it to Fuzz/crashes/ and as a named test.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${FUZZ_WORK:-.build/fuzz}
mkdir -p "$WORK/corpus" "$WORK/artifacts"
SOURCES=(Sources/RepTokFormat/*.swift)
FLAGS=(-O -g -module-name RepTokFormat -I Sources/CZstd -lzstd)

if [[ "${1:-}" == "--make-corpus" ]]; then
    swiftc "${FLAGS[@]}" -parse-as-library "${SOURCES[@]}" Fuzz/make_corpus.swift -o "$WORK/make_corpus"
    exec "$WORK/make_corpus" Fuzz/corpus
fi

swiftc "${FLAGS[@]}" -sanitize=fuzzer,address -parse-as-library "${SOURCES[@]}" Fuzz/fuzz_rtk.swift \
    -o "$WORK/fuzz_rtk"

if [[ "${1:-}" == "--replay" ]]; then
    shopt -s nullglob
    files=(Fuzz/corpus/* Fuzz/crashes/*)
    exec "$WORK/fuzz_rtk" "${files[@]}"
fi

SECONDS_TO_RUN=${1:-60}
shift || true
exec "$WORK/fuzz_rtk" -max_total_time="$SECONDS_TO_RUN" -dict=Fuzz/rtk.dict -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$WORK/artifacts/" "$@" "$WORK/corpus" Fuzz/corpus
