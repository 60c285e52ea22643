"""One row in a fresh process: `python -m bench.worker ROW --level L --out FILE`.

A fresh interpreter per row keeps rows from disturbing each other (threads, servers and
memory one row leaves behind would otherwise show up in the next one's figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bench.levels import LEVELS
from bench.rows import ROWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("row", choices=list(ROWS))
    parser.add_argument("--level", choices=list(LEVELS), default="full")
    parser.add_argument("--out", type=Path, required=True, help="where to write the row JSON")
    args = parser.parse_args(argv)
    # Rows provoke failures on purpose (a consolidator that errors, cancelled stragglers);
    # the engine's warnings about them would only bury the figures.
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    started = time.perf_counter()
    row = ROWS[args.row](LEVELS[args.level])
    row.elapsed_s = time.perf_counter() - started
    args.out.write_text(
        json.dumps(row.to_dict(), indent=2, default=str, ensure_ascii=False), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
