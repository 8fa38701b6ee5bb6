"""``python -m legato.testing.chaos worker …`` (one conductor) or ``run …`` (a long schedule)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        from legato.testing.chaos._worker import serve

        serve(argv[1:])
        return 0
    if argv[:1] == ["run"]:
        from legato.testing.chaos._cli import run

        return run(argv[1:])
    print("usage: python -m legato.testing.chaos {worker|run} ...  (run --help for options)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
