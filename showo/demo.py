"""`python -m showo.demo` (`make demo`): from nothing to evaluated results on a CPU, offline.

Steps, each reused when its output is already there (so a rerun is quick): build the tiny LLM, train the
tiny image tokenizer, build shards from the embedded data, run the five tiny stages (each starting from
the one before), export, run the pinned eval suites, then print a results table, write a PNG sheet
(generations, an inpainting, an extrapolation, captions) and the TensorBoard command.

Everything runs in this one process (imports are slow on small machines). `--budget smoke` (or
`SHOWO_DEMO_BUDGET=smoke`) shrinks every budget to a few steps and samples: it checks the orchestration,
not the model, and is what the test runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from showo.errors import ShowoError

STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3", "stage512", "instruct")
# shard directory name -> (embedded source kind, resolution, inputs). Counts cover what the tiny stages
# draw (shapes-128: stage512 reads 20 steps x 8 rows; instruct 150 x 6; keyframes 150 x 2), so encoding
# stays a small part of the demo; None = the source's natural size (2,048 shapes scenes).
STREAMS: dict[str, tuple[str, int, int | None]] = {
    "digits-64": ("digits", 64, None),
    "shapes-64": ("shapes", 64, None),
    "shapes-128": ("shapes", 128, 256),
    "text": ("text", 64, None),
    "shapes-instruct-64": ("shapes-instruct", 64, 1024),
    "shapes-keyframes-64": ("shapes-keyframes", 64, 256),
}
# which exported model each suite judges: digits are taught only by the class-conditional stage 1.
SUITE_MODELS: dict[str, str] = {
    "digits": "stage1",
    "geneval-mini": "instruct",
    "pope-mini": "instruct",
    "caption-mini": "instruct",
    "tokenizer": "tokenizer",
}
GOALS: dict[str, tuple[str, float]] = {
    "digits": ("accuracy", 0.8),
    "geneval-mini": ("overall", 0.6),
    "pope-mini": ("accuracy", 0.8),
}
# Where a user whose demo falls short of a goal finds what longer training reaches, and the commands.
LONGER_TRAINING = "docs/evaluation.md (the demo's evaluation; longer instruction tuning after the demo)"
RECIPE_DIR = Path("recipes/tiny")
TOKENIZER_RECIPE = Path("recipes/tokenizer/demo.yaml")
SHIPPED_PREFIX = "demo_out/"


@dataclass
class Budget:
    """How much work each step does. `full` is the demo; `smoke` only exercises the orchestration."""

    name: str = "full"
    llm: dict = field(
        default_factory=lambda: {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}
    )
    llm_vocab: int = 1024
    tokenizer_overrides: tuple[str, ...] = ()
    shard_limit: int | None = None
    stage_overrides: tuple[str, ...] = ()
    # One image per geneval-mini prompt (96) instead of the suite's four (recorded in every result).
    suite_settings: dict = field(default_factory=lambda: {"samples_per_prompt": 1})
    sheet_steps: int = 12
    sheet_tokens: int = 32
    scale: float = 1.0


def scaled(optim, scale: float) -> None:
    """Shrink (or stretch) a recipe's step budget in place: for slower machines, and to measure per-step cost."""
    if scale != 1.0:
        optim.max_steps = max(1, round(optim.max_steps * scale))
        optim.warmup_steps = min(optim.warmup_steps, max(1, round(optim.warmup_steps * scale)))


def budget(name: str) -> Budget:
    if name == "full":
        return Budget()
    if name == "smoke":
        return Budget(
            name="smoke",
            llm={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
            llm_vocab=300,
            tokenizer_overrides=(
                "optim.max_steps=1",
                "optim.warmup_steps=1",
                "data.batch_size=2",
                "data.usage_images=4",
                "data.heldout_crops=1",
                "trainer.sample_every=0",
            ),
            shard_limit=8,
            stage_overrides=(
                "optim.max_steps=1",
                "optim.warmup_steps=1",
                "trainer.sample_every=0",
                "trainer.checkpoint_every=1",
            ),
            suite_settings={
                "steps": 2,
                "per_tag": 1,
                "samples_per_prompt": 1,
                "samples_per_class": 1,
                "pope_images": 2,
                "caption_images": 2,
                "answer_tokens": 2,
                "caption_tokens": 4,
                "heldout_shapes": 2,
            },
            sheet_steps=2,
            sheet_tokens=4,
        )
    raise ShowoError(f"unknown demo budget {name!r}; expected full or smoke")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers): comparable across machine loads."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Progress:
    """Prints one line per step with its wall and CPU time, and keeps both for the summary.

    On a shared machine wall time says little; CPU seconds / cores bounds what an idle machine would take.
    """

    def __init__(self) -> None:
        self.started, self.cpu_started = time.time(), cpu_seconds()
        self.times: dict[str, dict[str, float]] = {}

    def step(self, name: str, work: Callable[[], object], reused: bool) -> object:
        if reused:
            print(f"[demo] {name}: reusing existing output", flush=True)
            self.times[name] = {"wall": 0.0, "cpu": 0.0, "reused": True}
            return None
        print(f"[demo] {name} ...", flush=True)
        t0, c0 = time.time(), cpu_seconds()
        result = work()
        wall, cpu = round(time.time() - t0, 1), round(cpu_seconds() - c0, 1)
        self.times[name] = {"wall": wall, "cpu": cpu, "reused": False}
        print(f"[demo] {name}: done in {wall:.1f} s ({cpu:.1f} CPU s)", flush=True)
        return result


def llm_corpus() -> list[str]:
    """What the tiny BPE and LLM vocabulary are fitted on: pydoc text plus the shapes and digits language."""
    from showo.embedded import digits, shapes, text

    scenes = list(shapes.scenes("train", 400))
    lines = [shapes.caption(s) for s in scenes]
    for i, scene in enumerate(scenes[:200]):
        lines += [f"USER: \n{q} ASSISTANT: {a}" for q, a in shapes.questions(scene, i)]
    lines += [f"USER: \n{p} ASSISTANT:" for p in shapes.DESCRIBE_PROMPTS]
    return text.documents("train") + lines + list(digits.CLASS_NAMES) * 20


def _retarget(path: str | None, out: Path) -> str | None:
    if path is None or not path.startswith(SHIPPED_PREFIX):
        return path
    return str(out / path[len(SHIPPED_PREFIX) :])


def stage_recipe(stage: str, out: Path, overrides: tuple[str, ...], scale: float = 1.0):
    """A tiny stage's recipe with its inputs and run directories moved under `out`."""
    return recipe_under(RECIPE_DIR / f"{stage}.yaml", out, overrides, scale)


def recipe_under(path: Path, out: Path, overrides: tuple[str, ...], scale: float = 1.0):
    """A recipe with its inputs and run directories moved under `out` (the shipped ones name demo_out/)."""
    from showo.recipe import load_recipe

    recipe = load_recipe(path, list(overrides))
    scaled(recipe.optim, scale)
    recipe.run.output_dir = str(out / "runs")
    recipe.model.llm = _retarget(recipe.model.llm, out)
    recipe.model.image_tokenizer = _retarget(recipe.model.image_tokenizer, out)
    if recipe.model.text_tokenizer:
        recipe.model.text_tokenizer = _retarget(recipe.model.text_tokenizer, out)
    for stream in recipe.data.streams.values():
        if stream is not None:
            stream.shards = [_retarget(p, out) for p in stream.shards]
    if recipe.init_from:
        recipe.init_from = str(out / "runs" / Path(recipe.init_from).name)
    vae = getattr(recipe.objective, "vae", None)  # a continuous-latent objective decodes with its VAE
    if isinstance(vae, str):
        recipe.objective.vae = _retarget(vae, out)
    return recipe


def fresh(target: Path, *sources: Path) -> bool:
    """`target` exists and is not older than any of `sources` (so a retrained input redoes what follows)."""
    if not target.is_file():
        return False
    return all(target.stat().st_mtime_ns >= s.stat().st_mtime_ns for s in sources if s.exists())


def stage_finished(recipe) -> bool:
    """True when the run's last complete checkpoint is at `max_steps` (a shorter one is resumed by `fit`)."""
    from showo.training.checkpoint import NAME_RE, list_checkpoints

    found = list_checkpoints(recipe.run_dir)
    return bool(found) and int(NAME_RE.match(found[-1].name).group(1)) >= recipe.optim.max_steps


class Demo:
    def __init__(self, out: Path, plan: Budget) -> None:
        self.out, self.plan, self.progress = out, plan, Progress()
        self.results: dict[str, dict] = {}

    def run(self) -> dict:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        self.out.mkdir(parents=True, exist_ok=True)
        self.build_llm()
        self.train_tokenizer()
        for name in STREAMS:
            self.build_shards(name)
        for stage in STAGES:
            self.train(stage)
        for stage in ("stage1", "instruct"):
            self.export(stage)
        for suite, model in SUITE_MODELS.items():
            self.evaluate(suite, model)
        self.sheet()
        summary = self.summary()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(table(summary))
        print(f"[demo] sheet: {self.out / 'sheet.png'}; results: {self.out / 'summary.json'}")
        print(f"[demo] TensorBoard: showo tensorboard {self.out / 'runs'}")
        return summary

    def build_llm(self) -> None:
        from showo.tiny_llm import build_tiny_llm

        target = self.out / "tiny-llm"
        done = (target / "config.json").is_file() and (target / "tokenizer.json").is_file()
        self.progress.step(
            "tiny LLM",
            lambda: build_tiny_llm(target, llm_corpus(), vocab_size=self.plan.llm_vocab, **self.plan.llm),
            done,
        )

    def train_tokenizer(self) -> None:
        from showo.recipe import load_recipe
        from showo.tokenizer.training import fit, reusable_export

        recipe = load_recipe(TOKENIZER_RECIPE, list(self.plan.tokenizer_overrides))
        scaled(recipe.optim, self.plan.scale)
        recipe.export_dir = str(self.out / "tokenizer")
        recipe.run.output_dir = str(self.out / "runs")
        self.progress.step("image tokenizer", lambda: fit(recipe), reusable_export(recipe) is not None)

    def build_shards(self, name: str) -> None:
        from data_engine.build import BuildOptions, build

        kind, resolution, count = STREAMS[name]
        target = self.out / "shards" / name
        limits = [c for c in (count, self.plan.shard_limit) if c is not None]
        options = BuildOptions(
            source=f"embedded:{kind}",
            out=str(target),
            tokenizer=str(self.out / "tokenizer"),
            resolution=resolution,
            name=name,
            limit=min(limits) if limits else None,
            workers=0,
            batch_size=64,
            device="cpu",
        )
        self.progress.step(
            f"shards {name}",
            lambda: build(options),
            fresh(target / "report.json", self.out / "tokenizer" / "model.safetensors"),
        )

    def train(self, stage: str) -> None:
        from showo.training import fit

        recipe = stage_recipe(stage, self.out, self.plan.stage_overrides, self.plan.scale)
        self.progress.step(f"train {stage}", lambda: fit(recipe), stage_finished(recipe))

    def export(self, stage: str) -> None:
        from showo.training.checkpoint import list_checkpoints
        from showo.training.export import export

        recipe = stage_recipe(stage, self.out, self.plan.stage_overrides, self.plan.scale)
        target = self.out / "models" / stage
        self.progress.step(
            f"export {stage}",
            lambda: export(recipe.run_dir, target, recipe.model.image_tokenizer),
            fresh(target / "config.json", *list_checkpoints(recipe.run_dir)[-1:]),
        )

    def evaluate(self, suite: str, model: str) -> None:
        from showo.eval.suites import SuiteSettings, run_suite

        ckpt = self.out / ("tokenizer" if model == "tokenizer" else f"models/{model}")
        result_path = self.out / "eval" / f"{suite}.json"
        settings = replace(SuiteSettings(), **self.plan.suite_settings)
        if fresh(result_path, ckpt / "model.safetensors"):
            saved = json.loads(result_path.read_text())
            if all(saved["settings"].get(k) == v for k, v in asdict(settings).items() if k != "resolution"):
                self.progress.step(f"eval {suite}", lambda: None, reused=True)
                self.results[suite] = saved
                return
        sheet = self.out / "eval" / f"{suite}.png"
        self.results[suite] = self.progress.step(
            f"eval {suite} ({model})",
            lambda: run_suite(ckpt, suite, out=result_path, settings=settings, sheet=sheet),
            False,
        )

    def sheet(self) -> None:
        target = self.out / "sheet.png"
        self.progress.step(
            "sheet",
            lambda: write_sheet(
                self.out / "models" / "instruct",
                self.out / "eval",
                target,
                self.plan.sheet_steps,
                self.plan.sheet_tokens,
            ),
            fresh(target, self.out / "models" / "instruct" / "model.safetensors"),
        )

    def summary(self) -> dict:
        rows = []
        for suite, (metric, goal) in GOALS.items():
            value = self.results[suite]["scores"][metric]
            rows.append(
                {"suite": suite, "metric": metric, "value": value, "goal": goal, "met": value >= goal}
            )
        extra = {
            "caption-mini recall": self.results["caption-mini"]["scores"].get("recall"),
            "pope-mini f1": self.results["pope-mini"]["scores"].get("f1"),
            "tokenizer photos psnr": self.results["tokenizer"]["scores"]["photos"].get("psnr"),
            "tokenizer photos ssim": self.results["tokenizer"]["scores"]["photos"].get("ssim"),
            "tokenizer shapes detector": self.results["tokenizer"]["scores"]["shapes"].get("detector_exact"),
            "tokenizer shapes bits": self.results["tokenizer"]["scores"]["shapes"].get("code_entropy_bits"),
        }
        return {
            "budget": self.plan.name,
            "scale": self.plan.scale,
            "goals": rows,
            "other": extra,
            "models": SUITE_MODELS,
            "seconds": self.progress.times,
            "total_seconds": round(time.time() - self.progress.started, 1),
            "total_cpu_seconds": round(cpu_seconds() - self.progress.cpu_started, 1),
            "cpus": os.cpu_count(),
        }


SHEET_CELL = 96


def _labelled(image, text: str):
    """`image` scaled to a sheet cell with `text` wrapped underneath."""
    import textwrap

    from PIL import Image, ImageDraw

    cell = Image.new("RGB", (SHEET_CELL, SHEET_CELL + 36), "white")
    cell.paste(image.convert("RGB").resize((SHEET_CELL, SHEET_CELL), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(cell)
    for i, line in enumerate(textwrap.wrap(text, 18)[:3]):
        draw.text((2, SHEET_CELL + 1 + 11 * i), line, fill="black")
    return cell


def write_sheet(
    model_dir: Path, eval_dir: Path, target: Path, steps: int = 12, tokens: int = 32, samples: int = 4
) -> Path:
    """One PNG: the eval generations, an inpainting, an extrapolation and captions of held-out images."""
    import torch
    from PIL import Image

    from showo.embedded import shapes
    from showo.sampling import canvas, understand
    from showo.sampling.images import decode_codes, encode_images, make_grid, to_pil
    from showo.sampling.pipeline import load_pipeline

    pipe = load_pipeline(model_dir)
    side = pipe.grid[0]
    generator = pipe.generator(0)
    settings = {"steps": steps, "guidance": 1.5, "generator": generator}
    scenes = list(shapes.scenes("heldout", samples, start=20_000))
    images = [shapes.render(s, pipe.resolution) for s in scenes]
    codes = encode_images(pipe.image_tokenizer, images, pipe.resolution)
    prompts = [shapes.caption(s) for s in scenes]
    half = torch.zeros(side, side, dtype=torch.bool)
    half[:, side // 2 :] = True
    with torch.no_grad():
        filled = canvas.inpaint(pipe.model, pipe.prompter, prompts, codes, half.flatten(), **settings)
        grown = canvas.extrapolate(
            pipe.model, pipe.prompter, prompts, codes.view(-1, side, side), "right", **settings
        )
        captions = understand.decode(
            pipe.model,
            pipe.prompter,
            pipe.model.vocab.codes_to_ids(codes),
            [shapes.DESCRIBE_PROMPTS[0]] * len(images),
            max_new_tokens=tokens,
        )
    inpainted = to_pil(decode_codes(pipe.image_tokenizer, filled, pipe.grid))
    extended = to_pil(decode_codes(pipe.image_tokenizer, grown.flatten(1), tuple(grown.shape[1:])))
    rows = []
    for suite in ("digits", "geneval-mini"):
        path = eval_dir / f"{suite}.png"
        if path.is_file():
            grid = Image.open(path).convert("RGB")  # the first rows only: geneval-mini has 96-384 images
            top = grid.crop((0, 0, grid.width, min(grid.height, 4 * (pipe.resolution + 2))))
            rows.append((f"{suite} generations (first rows of eval/{suite}.png)", top))
    cells = [_labelled(im, f"held-out: {p}") for im, p in zip(images, prompts)]
    cells += [_labelled(im, "inpainted right half") for im in inpainted]
    rows.append(("held-out images / inpainting (right half repainted)", make_grid(cells, ncol=samples)))
    wide = [im.resize((SHEET_CELL * im.width // im.height, SHEET_CELL), Image.NEAREST) for im in extended]
    rows.append(("extrapolation to the right", make_grid(wide, ncol=samples)))
    rows.append(
        (
            "captions (model)",
            make_grid([_labelled(im, c or "(empty)") for im, c in zip(images, captions)], samples),
        )
    )
    width = max(image.width for _, image in rows)
    height = sum(image.height + 16 for _, image in rows)
    sheet = Image.new("RGB", (width, height), "white")
    from PIL import ImageDraw

    draw, y = ImageDraw.Draw(sheet), 0
    for title, image in rows:
        draw.text((2, y + 2), title, fill="black")
        sheet.paste(image, (0, y + 16))
        y += image.height + 16
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, format="PNG")
    return target


def table(summary: dict) -> str:
    lines = ["", f"{'suite':<14} {'metric':<10} {'value':>7} {'goal':>6}  met", "-" * 46]
    for row in summary["goals"]:
        met = "yes" if row["met"] else "NO"
        lines.append(
            f"{row['suite']:<14} {row['metric']:<10} {row['value']:>7.3f} {row['goal']:>6.2f}  {met}"
        )
    for name, value in summary["other"].items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"{name:<25} {shown:>7}")
    lines.append(
        f"total {summary['total_seconds']:.0f} s wall, {summary['total_cpu_seconds']:.0f} CPU s on "
        f"{summary['cpus']} cores ({summary['budget']} budget x {summary.get('scale', 1.0):g}; tiny scale)"
    )
    if not all(row["met"] for row in summary["goals"]):
        lines.append(f"goals not met at this budget: {LONGER_TRAINING}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m showo.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    parser.add_argument(
        "--budget",
        default=os.environ.get("SHOWO_DEMO_BUDGET", "full"),
        help="full (the demo) or smoke (a few steps, to check the orchestration)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("SHOWO_DEMO_SCALE", "1")),
        help="multiply every training step budget by this (default 1; e.g. 0.5 on a slow machine)",
    )
    args = parser.parse_args(argv)
    try:
        if not args.scale > 0:
            raise ShowoError(f"--scale must be positive, got {args.scale}")
        Demo(Path(args.out), replace(budget(args.budget), scale=args.scale)).run()
    except ShowoError as err:
        print(f"showo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
