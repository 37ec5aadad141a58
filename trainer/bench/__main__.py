"""Benchmark dispatcher: `python -m trainer.bench NAME [args...]`.

NAME maps to the module `trainer.bench.<NAME with - as _>`, which must define `main(argv) -> int`.
A new benchmark is a new file; this dispatcher never needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import trainer.bench

_NOT_BENCHES = {"scenarios"}  # helper modules, not runnable benchmarks


def available() -> list[str]:
    mods = pkgutil.iter_modules(trainer.bench.__path__)
    return sorted(
        m.name.replace("_", "-")
        for m in mods
        if not m.name.startswith("_") and m.name not in _NOT_BENCHES
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m trainer.bench NAME [args]\nbenchmarks: {', '.join(available())}")
        return 0 if argv else 2
    name = argv[0]
    if name not in available():
        print(f"unknown benchmark {name!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"trainer.bench.{name.replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
