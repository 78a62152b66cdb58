"""Docker cannot run here: check that the files parse and that every path and entry point they name exists."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def _args(instructions) -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_dockerfile_base_is_cuda_and_torch_is_pinned_in_range(pyproject):
    ins = _instructions()
    known = {"ARG", "FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "CMD"}
    assert {op for op, _ in ins} <= known
    args = _args(ins)
    from_line = next(a for op, a in ins if op == "FROM")
    image = args["CUDA_IMAGE"] if from_line == "${CUDA_IMAGE}" else from_line
    assert image.startswith("nvidia/cuda:") and "devel" in image  # DeepSpeed JIT ops need nvcc
    version = args["TORCH_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    torch_dep = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    from packaging.specifiers import SpecifierSet

    assert version in SpecifierSet(torch_dep.removeprefix("torch"))
    runs = " ".join(a for op, a in ins if op == "RUN")
    assert "python3.11 -m venv" in runs  # the Python the suite is tested on (pyproject requires >= 3.11)
    assert '"torch==${TORCH_VERSION}"' in runs
    assert "pip install ." in runs
    assert any(d.startswith("deepspeed") for d in pyproject["project"]["dependencies"])


def test_dockerfile_copies_existing_paths_and_runs_as_non_root():
    ins = _instructions()
    for op, args in ins:
        if op == "COPY":
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (REPO / src).exists(), src
    users = [a for op, a in ins if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(a for op, a in ins if op == "RUN")
    assert "useradd" in runs and users[-1] in runs
    cmd = next(a for op, a in ins if op == "CMD")
    assert yaml.safe_load(cmd)[0] == "showo"


def test_dockerignore_keeps_the_venv_and_outputs_out_of_the_context():
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", "runs", "demo_out", "data"):
        assert path in ignored


def test_compose_services_paths_and_loopback_tensorboard(pyproject):
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"trainer", "tensorboard"} <= set(services)
    for service in services.values():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == REPO and (context / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            host, container = volume.split(":")[:2]
            assert (DOCKER / host).resolve().parent == REPO, volume
            assert container.startswith("/workspace/")
    trainer = services["trainer"]
    assert trainer["command"][:2] == ["showo", "train"]
    assert (REPO / trainer["command"][2]).is_file()
    assert "showo" in pyproject["project"]["scripts"]
    gpus = trainer["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpus["driver"] == "nvidia" and "gpu" in gpus["capabilities"]
    tensorboard = services["tensorboard"]
    assert tensorboard["command"][0] == "tensorboard"
    assert any(d.startswith("tensorboard") for d in pyproject["project"]["dependencies"])
    assert tensorboard["ports"] and all(p.startswith("127.0.0.1:") for p in tensorboard["ports"])
    assert all(v.endswith(":ro") for v in tensorboard["volumes"])
