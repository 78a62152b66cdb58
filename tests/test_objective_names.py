"""No module outside `showo/objectives/` branches on an image objective's or its sampler's name: everything
that depends on the objective asks the objective (`showo.objectives`). (`"maskgit"` is also the name of a
temperature schedule, compared as a schedule: only comparisons with a sampler count.)"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = r"(mtp|ar|diffusion)"
BRANCHES = [
    re.compile(r"\bsampler\s*(==|!=|not in\b|in\b)\s*[\(\[{]?\s*[\"']"),  # args.sampler == "maskgit"
    re.compile(rf"(==|!=|\bin)\s*[\(\[{{]?\s*[\"']{NAMES}[\"']"),  # x == "mtp", x in ("mtp", "ar")
    re.compile(rf"[\"']{NAMES}[\"']\s*(==|!=|\bin\b)"),  # "ar" == x
    re.compile(r"\b(objective|image_objective)(\.image|\.name|\.sampler)?\s*(==|!=)"),
    re.compile(r"\b(IMAGE_OBJECTIVES|attention_task|check_objective)\b"),
]


def branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in BRANCHES)]


def test_the_patterns_catch_the_branches_this_replaced():
    before = [
        'if args.sampler not in ("maskgit", "ar"):',
        'if self.objective.image != "mtp" or task not in IMAGE_TASKS:',
        'if image_objective == "ar":',
        "from showo.objective import IMAGE_TASKS, attention_task",
        "if objective.name == sampler:",
    ]
    before.append('if sampler == "maskgit":')
    assert branches("\n".join(before)) == before
    assert branches('sampler = "maskgit"\nobjective.attention(task)\nscheme = "mtp"') == []


def test_no_module_outside_the_objectives_branches_on_an_objective_name():
    found = {
        str(path.relative_to(REPO)): hits
        for path in sorted((REPO / "showo").rglob("*.py"))
        if "objectives" not in path.relative_to(REPO / "showo").parts
        and (hits := branches(path.read_text(encoding="utf-8")))
    }
    assert found == {}
