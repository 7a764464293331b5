#!/usr/bin/env bash
# Tokenizer encode throughput on one thread (issue 11's floor: 5 MB/s of English text).
#
#   bench/tokenizer_bench.sh [TOKENIZER_JSON]     (BUILD_DIR, MERGES, TEXT)
#
# Without TOKENIZER_JSON it learns GPT-2- and Llama-3-style byte-level BPE vocabularies
# (MERGES merges, default 2000) from the first MB of the corpus and times both. Prints
# MB/s for a cold piece cache (first pass) and a warm one.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
merges=${MERGES:-2000}
text=${TEXT:-data/fortunes.txt}
tool=$build_dir/test/tokenizer_tool
[ -x "$tool" ] || cmake --build "$build_dir" -j2 --target tokenizer_tool
[ -s "$text" ] || scripts/setup-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  echo "== $1 on $text"
  "$tool" bench "$1" "$text" 3
  exit 0
fi
head -c 1000000 "$text" > "$work/train.txt"
for style in gpt2 llama3; do
  "$tool" train "$work/train.txt" "$merges" "$work/$style.json" "$style"
  echo "== $style style, $merges merges, on $text ($(wc -c < "$text") bytes)"
  "$tool" bench "$work/$style.json" "$text" 3
done
