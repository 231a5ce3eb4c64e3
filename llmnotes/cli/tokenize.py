"""``llmnotes tokenize``: train a tokenizer, or encode text into a uint16 token file."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmnotes.data import write_token_file


def add_tokenize_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``llmnotes tokenize``."""
    parser.add_argument("--data", type=Path, default=None, help="UTF-8 text file to read (required)")
    parser.add_argument("--input", type=Path, dest="data", help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--out", type=Path, required=True,
                        help="token file (.bin) to write, or with --train-tokenizer a folder")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help="train a BPE tokenizer on --data and save it to --out")
    parser.add_argument("--vocab-size", type=int, default=2048,
                        help="vocab size for --train-tokenizer, special tokens included (default 2048)")
    parser.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"],
                        help="special tokens for --train-tokenizer (default <|endoftext|>)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer folder for encoding (default: the shipped tokenizer)")


def run_tokenize(args: argparse.Namespace) -> int:
    """Train a tokenizer (``--train-tokenizer``) or encode ``--data`` into a uint16 ``--out`` file."""
    from llmnotes.tokenizer import BPETokenizer, load_tokenizer

    from llmnotes.utils import check_output_path

    if args.data is None:
        raise ValueError("--data is required: the UTF-8 text file to read")
    if not args.data.is_file():
        raise FileNotFoundError(f"--data {str(args.data)!r} does not exist")
    if str(args.out) in ("", "."):
        raise ValueError(f"--out {str(args.out)!r} is not a usable output path; pass a file name (or a "
                         "folder with --train-tokenizer)")
    if args.train_tokenizer:
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r} is a file; --train-tokenizer writes a folder")
    else:
        check_output_path(args.out, inputs=[args.data])  # before encoding: fail fast, lose nothing
    try:
        text = args.data.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--data {str(args.data)!r} is not UTF-8 text ({err})") from None
    if args.train_tokenizer:
        tok = BPETokenizer.train(text, args.vocab_size, special_tokens=args.special_tokens)
        tok.save(args.out)
        print(f"trained a {tok.vocab_size}-token tokenizer on {len(text.encode('utf-8')):,} bytes "
              f"-> {args.out}")
        return 0
    tok = load_tokenizer(args.tokenizer)
    if tok.vocab_size > 2 ** 16:
        raise ValueError(f"the tokenizer has {tok.vocab_size} ids; uint16 token files hold < 65,536")
    ids = tok.encode(text, allowed_special="all")
    write_token_file(args.out, ids)
    n_bytes = len(text.encode("utf-8"))
    print(f"{len(ids):,} tokens ({n_bytes / max(1, len(ids)):.2f} bytes/token) -> {args.out}")
    return 0
