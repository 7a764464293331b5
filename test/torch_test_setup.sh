# Sourced by the tests that compare with PyTorch: skip (77) without torch, a work folder
# removed on exit ($work), and a training text of $1 bytes in $work/train.txt — the
# default corpus when set-up made it, else the repository's own text.
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "python3-torch is not installed: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -s "$src_dir/data/fortunes.txt" ]; then
  head -c "$1" "$src_dir/data/fortunes.txt" > "$work/train.txt"
else
  cat "$src_dir"/docs/*.md "$src_dir"/README.md | head -c "$1" > "$work/train.txt"
fi
