#!/usr/bin/env python3
"""Compares ds::tokenizer with the Python `tokenizers` library, line by line.

    scripts/check_tokenizer.py [--tool PATH] TOKENIZER_JSON TEXT_FILE
    scripts/check_tokenizer.py [--tool PATH] --self-test TEXT_FILE

For every line of TEXT_FILE (split on "\\n" only, so "\\r" stays in the line) the ids of
`tokenizer_tool encode` must equal `Tokenizer.encode(line, add_special_tokens=False).ids`
and its decoded text must equal `Tokenizer.decode(ids, skip_special_tokens=False)`.
--self-test first trains a GPT-2-style and a Llama-3-style tokenizer on TEXT_FILE with the
library and checks both. Without an importable `tokenizers` the script says so and exits 0.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def find_tool(given):
    if given:
        return given
    if os.environ.get("DS_TOKENIZER_TOOL"):
        return os.environ["DS_TOKENIZER_TOOL"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in [os.path.join(root, "build", "test", "tokenizer_tool")] + sorted(
            glob.glob(os.path.join(root, "build*", "test", "tokenizer_tool"))):
        if os.access(path, os.X_OK):
            return path
    sys.exit("check_tokenizer: tokenizer_tool not found; build it "
             "(cmake --build build --target tokenizer_tool) or pass --tool")


def check(tokenizers, tool, tokenizer_json, text_file):
    hf = tokenizers.Tokenizer.from_file(tokenizer_json)
    with open(text_file, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = subprocess.run([tool, "encode", tokenizer_json, text_file], check=True,
                         capture_output=True).stdout.decode("utf-8").split("\n")
    # Only "\n" ends a record: str.splitlines() would also split at U+2028, U+0085, ...,
    # which JSON strings may hold as they are.
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines):
        print(f"check_tokenizer: {tokenizer_json}: {len(out)} lines from the tool, "
              f"{len(lines)} in {text_file}")
        return False
    bad = 0
    for n, (line, ours) in enumerate(zip(lines, out), 1):
        ours = json.loads(ours)
        ids = hf.encode(line, add_special_tokens=False).ids
        text_back = hf.decode(ids, skip_special_tokens=False)
        if ours["ids"] != ids:
            k = next((i for i, (a, b) in enumerate(zip(ours["ids"], ids)) if a != b),
                     min(len(ours["ids"]), len(ids)))
            print(f"line {n}: ids differ at {k}: ours {ours['ids'][k:k + 8]} "
                  f"tokenizers {ids[k:k + 8]}\n  text {line!r}")
            bad += 1
        elif ours["text"] != text_back:
            print(f"line {n}: decode differs: ours {ours['text']!r} tokenizers {text_back!r}")
            bad += 1
    print(f"check_tokenizer: {tokenizer_json}: {len(lines) - bad}/{len(lines)} lines agree "
          f"(tokenizers {tokenizers.__version__})")
    return bad == 0


def train(tokenizers, style, text_file, out):
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        special = "<|endoftext|>"
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        special = "<|begin_of_text|>"
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=[special], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([text_file], trainer)
    tok.save(out)
    if style == "llama3":  # Llama 3 emits a pre-token that is a whole vocab entry as it is
        with open(out) as f:
            j = json.load(f)
        j["model"]["ignore_merges"] = True
        with open(out, "w") as f:
            json.dump(j, f, ensure_ascii=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tool", help="path of tokenizer_tool (default: build*/test/tokenizer_tool)")
    p.add_argument("--self-test", action="store_true",
                   help="train GPT-2- and Llama-3-style tokenizers on TEXT_FILE and check both")
    p.add_argument("files", nargs="+", metavar="FILE", help="[TOKENIZER_JSON] TEXT_FILE")
    args = p.parse_args()
    try:
        import tokenizers
    except ImportError:
        print("check_tokenizer: skipped: the Python `tokenizers` library is not importable "
              "(install it, e.g. pip install tokenizers, to compare against it)")
        return 0
    tool = find_tool(args.tool)
    if args.self_test:
        if len(args.files) != 1:
            p.error("--self-test takes TEXT_FILE only")
        ok = True
        with tempfile.TemporaryDirectory() as tmp:
            for style in ("gpt2", "llama3"):
                path = os.path.join(tmp, f"{style}.json")
                train(tokenizers, style, args.files[0], path)
                ok = check(tokenizers, tool, path, args.files[0]) and ok
        return 0 if ok else 1
    if len(args.files) != 2:
        p.error("expected TOKENIZER_JSON TEXT_FILE")
    return 0 if check(tokenizers, tool, args.files[0], args.files[1]) else 1


if __name__ == "__main__":
    sys.exit(main())
