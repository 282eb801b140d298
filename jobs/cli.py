"""The `vrscore` command. Each subcommand lives in its own module under jobs/ and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help). Modules are imported only when their command runs,
# so `vrscore --help` stays fast and torch is never imported by jobs that don't need it.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("jobs.score_command", "score every row of a Parquet manifest with a checklist"),
    "demo": ("jobs.demo", "make synthetic media and a tiny random model, then score them end to end"),
    "make-demo-model": ("jobs.demo_model_command", "build a tiny random-weight Qwen2-VL model (offline)"),
    "filter": ("jobs.filter_command", "keep scored rows by conditions on scores, dimensions and questions"),
    "pairs": ("jobs.pairs_command", "mine chosen/rejected preference pairs within groups (Parquet, DPO JSON)"),
    "eval": ("jobs.eval_command", "agreement of the scores with human pairwise preferences"),
    "report": ("jobs.report_command", "a self-contained HTML report of a scores output"),
    "fit": ("jobs.fit_command", "fit checklist weights to human preference pairs from the stored p_yes"),
    "rescore": ("jobs.rescore_command", "recompute scores from the stored p_yes with another checklist (no model)"),
    "compare": ("jobs.compare_command", "score two media with one checklist and model and say which is better"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrscore",
        description="Batch scoring of images and videos with checklist reward models on Ray Data.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        # User errors (bad manifest, checklist, config): one clear line, no traceback.
        if args.verbose:
            raise
        print(f"vrscore {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
