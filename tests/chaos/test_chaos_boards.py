"""The chaos suite in CI: a short randomized schedule on every board, zero violations.

Per board: the ``mixed`` scenario (every fault that applies to the board, at random) and one
more named scenario drawn by the seed. The seed is printed; set ``LEGATO_CHAOS_SEED`` to replay
a run. Every conductor and private server the harness starts is stopped when a test ends,
whether it passed, failed or timed out.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from legato.testing import services
from legato.testing.chaos import SCENARIOS, applicable, run_scenario

IN_CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("LEGATO_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
#: Seconds of faults per scenario (the board is drained afterwards).
WINDOWS = {"mixed": 18.0, "other": 8.0}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _scenarios(board: str, seed: int) -> list[str]:
    others = sorted(name for name, s in SCENARIOS.items()
                    if name != "mixed" and applicable(s, board))
    return ["mixed", random.Random(f"{seed}-{board}").choice(others)]


@pytest.mark.parametrize("board", ["sqlite", "postgres", "redis", "zookeeper"])
def test_no_invariant_is_violated_under_faults(board: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nchaos seed {SEED} (LEGATO_CHAOS_SEED={SEED} replays it) on {board}")
    failures = []
    for index, name in enumerate(_scenarios(board, SEED)):
        window = WINDOWS["mixed" if name == "mixed" else "other"]
        try:
            result = run_scenario(name, board, seed=SEED + index, window=window,
                                  workdir=tmp_path / name)
        except (services.ServiceUnavailable, FileNotFoundError) as exc:
            if IN_CI:
                pytest.fail(f"required service unavailable under CI=true: {exc}")
            pytest.skip(f"service unavailable: {exc}")
        with capsys.disabled():
            print(f"  {name}: {result.check.jobs} jobs, faults {dict(result.faults)}, "
                  f"{result.check.steps_rerun} steps re-run, "
                  f"{len(result.check.notices)} late starts, "
                  f"{len(result.check.violations)} violations")
        assert result.check.jobs > 0
        assert sum(result.check.checked.values()) > 0
        failures += [f"{name} (seed {SEED + index}): {v}" for v in result.check.violations]
    assert not failures, (f"chaos seed {SEED} on {board}: {len(failures)} violations; "
                          "first ones:\n" + "\n".join(failures[:10]))
