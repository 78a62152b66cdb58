"""`showo tensorboard RUN_DIR [--port P]`: serve a run's TensorBoard logs on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from showo.commands import checks
from showo.errors import ShowoError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tensorboard", help="view a run's TensorBoard logs (bound to 127.0.0.1)")
    parser.add_argument("run_dir", help="a run directory (or any directory of event files)")
    parser.add_argument(
        "--port", type=checks.port, default=6006, help="1..65535, or 0 for a free one (default 6006)"
    )
    parser.set_defaults(func=run)


def logdir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise ShowoError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise ShowoError(f"{path} is not a directory: give a run directory")
    return path / "tensorboard" if (path / "tensorboard").is_dir() else path


def run(args: argparse.Namespace) -> int:
    logs = logdir(args.run_dir)
    if importlib.util.find_spec("tensorboard") is None:
        raise ShowoError("tensorboard is not installed in this environment (pip install tensorboard)")
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logs),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    where = f"http://127.0.0.1:{args.port}/" if args.port else "127.0.0.1, a free port (printed below)"
    print(f"TensorBoard on {where} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
