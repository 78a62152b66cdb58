"""How many DataLoader workers and torch threads one partition of a build uses.

Oversubscribed cores make both decoding and the encoder's convolutions far slower (measured on 2 cores:
two partitions with 2 workers and 2 threads each took 2.5x longer than one process, while 1 worker and 1
thread each ran 1.5-2.0x faster), so workers x threads never exceed the cores this process may run on
(`os.sched_getaffinity`), shared among the partitions started on the same node.
"""

from __future__ import annotations

import os
import sys

import torch

from showo.errors import ShowoError


def available_cores() -> int:
    """The cores this process may use (its affinity mask under taskset, cgroups cpusets or SLURM)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def partitions_on_node(world_size: int, explicit_world: bool) -> int:
    """Partitions sharing this node's cores: torchrun's LOCAL_WORLD_SIZE; else, for `--world-size` given
    on the command line (partitions started by hand), all of them; else this one alone."""
    value = os.environ.get("LOCAL_WORLD_SIZE")
    if value is not None:
        try:
            local = int(value)
        except ValueError:
            raise ShowoError(
                f"environment variable LOCAL_WORLD_SIZE={value[:40]!r} is not an integer"
            ) from None
        if local < 1:
            raise ShowoError(f"environment variable LOCAL_WORLD_SIZE={local} must be at least 1")
        return local
    return world_size if explicit_world else 1


def plan(
    workers: int | None, threads: int | None, device: torch.device, cores: int
) -> tuple[int, int, str | None]:
    """(workers, threads, note): defaults that fill `cores` without oversubscribing them (a GPU encoder
    needs one thread, the rest decode); requested values whose product exceeds `cores` are clamped, and
    `note` says so. Zero workers means decoding in the main process (counted as one)."""
    if threads is None:
        threads = 1 if device.type == "cuda" or cores < 4 else cores // 2
        threads = min(threads, max(1, cores // max(1, workers or 1)))
    if workers is None:
        workers = max(1, cores // threads)
    if max(1, workers) * threads <= cores:
        return workers, threads, None
    fitted_threads = min(threads, cores)
    fitted_workers = min(workers, max(1, cores // fitted_threads))
    note = (
        f"--workers {workers} x --threads {threads} exceeds the {cores} cores this partition may use; "
        f"using {fitted_workers} x {fitted_threads}"
    )
    return fitted_workers, fitted_threads, note


def choose(
    workers: int | None,
    threads: int | None,
    device: torch.device,
    world_size: int,
    explicit_world: bool,
    batch_size: int,
) -> tuple[dict, str | None]:
    """The partition's resources (recorded in every shard record it writes; report.json lists them) and
    the note to print when a request was clamped."""
    total = available_cores()
    local = partitions_on_node(world_size, explicit_world)
    cores = max(1, total // local)
    workers, threads, note = plan(workers, threads, device, cores)
    chosen = {
        "cores": cores,
        "cores_on_node": total,
        "partitions_on_node": local,
        "workers": workers,
        "threads": threads,
        "device": str(device),
        "batch_size": batch_size,
    }
    return chosen, note


def announce(chosen: dict, note: str | None, rank: int, world_size: int, verbose: bool) -> None:
    """The note always (a request was changed); the chosen values when progress is shown."""
    if note:
        print(f"showo-data: note: {note}", file=sys.stderr)
    if verbose:
        print(
            f"showo-data: partition {rank}/{world_size}: {chosen['cores']} of {chosen['cores_on_node']} cores "
            f"({chosen['partitions_on_node']} partition(s) on this node), {chosen['workers']} workers x "
            f"{chosen['threads']} threads, device {chosen['device']}, batch {chosen['batch_size']}",
            file=sys.stderr,
        )
