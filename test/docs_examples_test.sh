#!/usr/bin/env bash
# Runs the shell examples of README.md and docs/*.md that are marked for testing, as
# written, in a temporary copy of the repository, so that the docs cannot drift from
# the programs.
#
#   test/docs_examples_test.sh SOURCE_DIR BINARY_DIR [FILE.md ...]
#
# A block is tested when the line before its opening ```sh fence (blank lines
# allowed in between) is an HTML comment:
#   <!-- test -->                     run it
#   <!-- test if="COMMAND" -->        run it when COMMAND succeeds, else skip it
# Blocks of one file run in order in the same copy (later ones may use earlier
# results), each with `bash -euo pipefail` and a time limit. The copy holds the
# repository's files, data/ linked, and build/ linked to BINARY_DIR, so examples
# write `build/bin/dsworker` as a user of the default build would.
# Exit: 0 all passed, 1 a failure, 77 skipped (no data/fortunes.txt: run
# scripts/setup-deps.sh).
set -uo pipefail
src=$(cd "$1" && pwd)
bin=$(cd "$2" && pwd)
shift 2
limit=${DS_DOCS_TIMEOUT:-180}

if [ ! -s "$src/data/fortunes.txt" ]; then
  echo "docs_examples_test: SKIP: $src/data/fortunes.txt is missing (scripts/setup-deps.sh writes it)"
  exit 77
fi

if [ $# -eq 0 ]; then
  set -- "$src/README.md" "$src"/docs/*.md
fi

# Prints each tested block of a markdown file as: a header line "@@ LINE CONDITION",
# then the block's lines.
extract() {
  awk '
    /^<!-- test( if="[^"]*")? -->[[:space:]]*$/ {
      marked = 1; cond = ""
      if (match($0, /if="[^"]*"/)) cond = substr($0, RSTART + 4, RLENGTH - 5)
      next
    }
    marked && /^[[:space:]]*$/ { next }
    marked && /^```(sh|bash|shell)[[:space:]]*$/ {
      print "@@ " NR " " cond; inside = 1; marked = 0; next
    }
    { marked = 0 }
    inside && /^```[[:space:]]*$/ { inside = 0; next }
    inside { print }
  ' "$1"
}

failures=0
ran=0
for doc in "$@"; do
  [ -f "$doc" ] || continue
  name=${doc#"$src"/}
  blocks=$(extract "$doc")
  [ -n "$blocks" ] || continue
  work=$(mktemp -d "${TMPDIR:-/tmp}/ds_docs.XXXXXX")
  # A copy of the repository as a user has it after building: sources, configs,
  # scripts, data (linked: it is large) and the build (linked).
  (cd "$src" && tar --exclude='./build*' --exclude=./data --exclude=./runs --exclude=./.git \
      -cf - .) | tar -xf - -C "$work"
  ln -s "$src/data" "$work/data"
  ln -s "$bin" "$work/build"
  # Split into one script per block.
  awk -v dir="$work" '
    /^@@ / { n++; file = sprintf("%s/.block%03d.sh", dir, n); print $0 > file; next }
    { print > file }
  ' <<<"$blocks"
  for block in "$work"/.block*.sh; do
    header=$(head -n 1 "$block")
    line=$(awk '{print $2}' <<<"$header")
    cond=$(cut -d' ' -f3- <<<"$header")
    tail -n +2 "$block" > "$block.body"
    if [ -n "$cond" ] && ! (cd "$work" && bash -c "$cond") > /dev/null 2>&1; then
      echo "docs_examples_test: skip $name:$line (needs: $cond)"
      continue
    fi
    ran=$((ran + 1))
    if (cd "$work" && PATH="$work/build/bin:$PATH" BUILD_DIR="$work/build" \
        timeout "$limit" bash -euo pipefail "$block.body") > "$block.out" 2>&1; then
      echo "docs_examples_test: ok   $name:$line"
    else
      code=$?
      failures=$((failures + 1))
      echo "docs_examples_test: FAIL $name:$line (exit code $code)"
      sed 's/^/    | /' "$block.body"
      echo "    output (last 40 lines):"
      tail -n 40 "$block.out" | sed 's/^/    > /'
    fi
  done
  rm -rf "$work"
done
echo "docs_examples_test: $ran examples run, $failures failed"
[ "$failures" -eq 0 ]
