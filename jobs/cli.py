"""The `vrscore` command. Each subcommand lives in its own module under jobs/ and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

# subcommand -> (module, one-line help). Modules are imported only when their command runs,
# so `vrscore --help` stays fast and torch is never imported by jobs that don't need it.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("jobs.score_command", "score every row of a Parquet manifest with a checklist"),
    "judge": ("jobs.judge_command", "judge pairs of items with a pairwise checklist, both orders; rank them per group"),
    "demo": ("jobs.demo", "make synthetic media and a tiny random model, then score them end to end"),
    "make-demo-model": ("jobs.demo_model_command", "build a tiny random-weight model of a supported family (offline)"),
    "filter": ("jobs.filter_command", "keep scored rows by conditions on scores, dimensions and questions"),
    "pairs": ("jobs.pairs_command", "mine chosen/rejected preference pairs within groups (Parquet, DPO JSON)"),
    "eval": ("jobs.eval_command", "agreement of the scores with human pairwise preferences"),
    "report": ("jobs.report_command", "a self-contained HTML report of a scores output"),
    "fit": ("jobs.fit_command", "fit checklist weights to human preference pairs from the stored p_yes"),
    "calibrate": ("jobs.calibrate_command", "fit per-question Platt or temperature calibration of p_yes to 0/1 labels"),
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
    except Exception as exc:  # noqa: BLE001 - sorted below: the user's mistake, a stop, or a bug
        if args.verbose:
            raise
        user_error = _user_error(exc)
        if user_error is not None:  # bad config, manifest, checklist, refused output: one clear line
            print(f"vrscore {args.command}: error: {user_error}", file=sys.stderr)
            return 2
        traceback.print_exception(exc)  # a bug or a broken environment: the traceback is the report
        stop = _systemic_stop(exc)
        print(f"vrscore {args.command}: " + (f"stopped: {stop}" if stop else
              f"failed (traceback above): {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1


def _in_chain(exc: BaseException, types: tuple[type, ...]) -> BaseException | None:
    """The first exception of `types` in the chain of causes (Ray wraps a stage's errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, types):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _user_error(exc: BaseException) -> BaseException | None:
    """`exc` when it is a user error. Plain ValueErrors are not among them: an
    internal bug raises those too, and must show its traceback."""
    from pydantic import ValidationError

    from schemas.user_error import UserError

    # ConfigError, ManifestError, FilterError and ChecklistFormatError are UserErrors too.
    types: tuple[type, ...] = (UserError, ValidationError, FileNotFoundError, FileExistsError, PermissionError)
    return exc if isinstance(exc, types) else None


def _systemic_stop(exc: BaseException) -> str | None:
    """The message of a SystemicScoringError (or a scorer told cuda without a GPU) behind `exc`.
    Ray Data hands a stage's error to the driver as a UserCodeException that keeps only the text
    of the original traceback, so the text is searched where the type is gone."""
    from actors.adapters.devices import GpuUnavailableError
    from actors.systemic_failure import SystemicScoringError

    stops = (SystemicScoringError, GpuUnavailableError)
    found = _in_chain(exc, stops)
    if found is not None:
        return str(found)
    markers = [f"{t.__module__}.{t.__name__}: " for t in stops]
    return next((line.split(m, 1)[1] for line in str(exc).splitlines() for m in markers if m in line), None)


if __name__ == "__main__":
    sys.exit(main())
