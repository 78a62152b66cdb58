"""`showo tensorboard RUN_DIR [--port P]`: serve a run's TensorBoard logs on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from showo.errors import ShowoError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tensorboard", help="view a run's TensorBoard logs (bound to 127.0.0.1)")
    parser.add_argument("run_dir", help="a run directory (or any directory of event files)")
    parser.add_argument("--port", type=int, default=6006)
    parser.set_defaults(func=run)


def logdir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise ShowoError(f"run directory {path} does not exist")
    return path / "tensorboard" if (path / "tensorboard").is_dir() else path


def run(args: argparse.Namespace) -> int:
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir(args.run_dir)),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    print(f"TensorBoard on http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
