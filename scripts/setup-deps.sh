#!/usr/bin/env bash
# Installs every Debian package dstrain builds and tests with (DESIGN.md), then
# writes the default example's corpus to data/fortunes.txt. Safe to run again:
# it installs only what is missing and rewrites the corpus only when absent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git clang-format  # toolchain
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libfmt-dev     # CLI and configs
  zlib1g-dev                                                     # checkpoint checksums
  catch2                                                         # tests
  libssh-dev openssh-server                                      # launcher over SSH
  libgloo-dev                                                    # CPU collectives
  libopenblas-dev libopenblas0-openmp                            # CPU matmuls (OpenMP build)
  python3 python3-torch python3-numpy                            # reference numbers
  python3-matplotlib                                             # scripts/plot_metrics.py
  unicode-data                                                   # lib/tokenizer: Unicode classes at build time
  fortunes fortunes-min                                          # the default example's text
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q \
    --no-install-recommends "${missing[@]}"
else
  echo "setup-deps: all ${#packages[@]} packages are installed"
fi

# The default corpus: every fortune file as plain text, '%' separators turned into
# blank lines. Sorted so that every machine builds byte-identical data.
corpus=data/fortunes.txt
if [ ! -s "$corpus" ]; then
  mkdir -p data
  tmp=$(mktemp data/.fortunes.XXXXXX)
  find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' \
    -print0 | LC_ALL=C sort -z | xargs -0 cat | sed 's/^%$//' > "$tmp"
  mv "$tmp" "$corpus"
  echo "setup-deps: wrote $corpus ($(wc -c < "$corpus") bytes)"
fi
