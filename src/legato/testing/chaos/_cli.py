"""``scripts/chaos``: a long randomized schedule over every scenario and board, then a table."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

from legato.testing import services
from legato.testing.chaos._scenarios import BOARDS, SCENARIOS, applicable, run_scenario

__all__ = ["Row", "run"]


@dataclasses.dataclass
class Row:
    """Totals of one scenario on one board."""

    runs: int = 0
    jobs: int = 0
    faults: int = 0
    reruns: int = 0
    late_starts: int = 0
    violations: int = 0
    skipped: str = ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos", description="Run chaos scenarios on every board for a while and "
        "print scenarios x boards with counts (every applicable cell runs at least once). "
        "Exits 1 if any invariant was violated.")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--boards", default=",".join(BOARDS),
                        help=f"comma-separated, from {','.join(BOARDS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated scenario names")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of faults per run (then the board is drained)")
    parser.add_argument("--conductors", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep every run's logs here (default: a temporary directory)")
    return parser


def _pick(value: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    boards = _pick(args.boards, BOARDS, "boards")
    names = _pick(args.scenarios, list(SCENARIOS), "scenarios")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="legato-chaos-"))
    print(f"chaos: seed {seed}, {args.minutes:g} min, boards {','.join(boards)}, logs in "
          f"{workdir}", flush=True)
    rng = random.Random(seed)
    cells = [(s, b) for s in names for b in boards if applicable(SCENARIOS[s], b)]
    rows: dict[tuple[str, str], Row] = collections.defaultdict(Row)
    deadline = time.monotonic() + args.minutes * 60
    count = 0
    passes = 0
    # At least one pass over every cell, then more until the time is up.
    while cells and (passes == 0 or time.monotonic() < deadline):
        order = cells[:]
        rng.shuffle(order)
        passes += 1
        for scenario, board in order:
            if passes > 1 and time.monotonic() >= deadline:
                break
            count += 1
            _one(rows[scenario, board], scenario, board, rng.randrange(10**9), args,
                 workdir / f"{count:03d}-{scenario}-{board}")
    _table(rows, names, boards)
    return 1 if any(row.violations for row in rows.values()) else 0


def _one(row: Row, scenario: str, board: str, seed: int, args: argparse.Namespace,
         workdir: Path) -> None:
    try:
        result = run_scenario(scenario, board, seed=seed, window=args.window,
                              conductors=args.conductors, workdir=workdir)
    except services.ServiceUnavailable as exc:
        row.skipped = str(exc)
        print(f"{scenario:<24} {board:<10} skipped: {exc}", flush=True)
        return
    row.runs += 1
    row.jobs += result.check.jobs
    row.faults += sum(result.faults.values())
    row.reruns += result.check.steps_rerun
    row.late_starts += len(result.check.notices)
    row.violations += len(result.check.violations)
    status = "ok" if result.ok else f"{len(result.check.violations)} VIOLATIONS"
    print(f"{scenario:<24} {board:<10} seed {seed:<10} jobs {result.check.jobs:<4} faults "
          f"{dict(result.faults)} re-run {result.check.steps_rerun} "
          f"late starts {len(result.check.notices)} "
          f"{result.elapsed:.0f}s: {status}", flush=True)
    for violation in result.check.violations[:5]:
        print(f"    {violation}", flush=True)
    if len(result.check.violations) > 5:
        print(f"    ... and {len(result.check.violations) - 5} more (logs: {workdir})",
              flush=True)


def _table(rows: dict[tuple[str, str], Row], names: list[str], boards: list[str]) -> None:
    header = (f"| {'scenario':<24} | {'board':<10} "
              "| runs | jobs | faults | steps re-run | late starts | violations |")
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for scenario in names:
        for board in boards:
            if (scenario, board) not in rows:
                continue
            r = rows[scenario, board]
            if r.skipped and not r.runs:
                print(f"| {scenario:<24} | {board:<10} | skipped: {r.skipped} |")
                continue
            print(f"| {scenario:<24} | {board:<10} | {r.runs:>4} | {r.jobs:>4} | {r.faults:>6} "
                  f"| {r.reruns:>12} | {r.late_starts:>11} | {r.violations:>10} |")
    sys.stdout.flush()
