"""`make bench`: run every `bench/*.py` (each prints one JSON line), collect them into bench/results.json.

Each benchmark runs in its own process (`python -m bench.<name>`) so one's imports, threads and caches do
not colour another's timings; their ratios are measured side by side inside each script, so they stay
meaningful on a shared machine, while absolute numbers are labelled with the machine and its load.
Run: `.venv/bin/python -m bench.run_all [--only NAME ...] [--out bench/results.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SKIP = {"run_all", "__init__", "common"}  # common: shared helpers, not a benchmark


def benchmarks(only: list[str] | None = None) -> list[str]:
    """Module names of the benchmark scripts, sorted; `only` restricts (and checks) the selection."""
    found = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in SKIP)
    if only:
        unknown = sorted(set(only) - set(found))
        if unknown:
            raise SystemExit(
                f"run_all: error: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(found)}"
            )
        found = [name for name in found if name in only]
    return found


def last_json_line(text: str) -> dict | None:
    """The last stdout line that parses as a JSON object (progress output may come before it)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_one(name: str, timeout: float) -> dict:
    """Run `bench/<name>.py` from the repository root; its JSON line, or the reason there is none."""
    started = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"bench.{name}"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    seconds = round(time.time() - started, 1)
    result = last_json_line(proc.stdout)
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}", "seconds": seconds}
    return {"result": result, "seconds": seconds}


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these benchmarks (names without .py)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.json"), help="results file")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per benchmark")
    args = parser.parse_args(argv)
    names = benchmarks(args.only)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
        "benchmarks": {},
    }
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        report["benchmarks"][name] = run_one(name, args.timeout)
        print(json.dumps({name: report["benchmarks"][name]}), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, entry in report["benchmarks"].items() if "error" in entry]
    print(f"[bench] wrote {args.out}; {len(names) - len(failed)} ok, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
