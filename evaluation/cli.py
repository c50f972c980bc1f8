"""The command-line options every heavy experiment driver shares (sweep, post-hoc)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models import zoo


def experiment_parser(description: str, out_help: str) -> argparse.ArgumentParser:
    """A parser with --quick, --out, --threads and --no-progress; add the driver's own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", default=None,
                        help="tiny models (also LEARNEDSHAP_QUICK=1)")
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def setup(args: argparse.Namespace, committed: Path, quick_folder: str) -> tuple[bool, Path]:
    """Quick mode, threads, and the output folder: `committed` unless quick (then the cache)."""
    quick = zoo.quick_mode(args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    return quick, args.out or (zoo.cache_dir() / quick_folder if quick else committed)
