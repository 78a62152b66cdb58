"""Image objectives side by side: MTP (Show-o), AR (Chameleon / LlamaGen) and diffusion (Transfusion).

The analogue of Transfusion's study against Chameleon, across every objective this system trains: one tiny
backbone, one data set (the demo's class-conditional digits with captioning and language modelling, the
tiny stage 1), one seed and the same rows per step for each objective, at equal training compute: the first
objective trains its recipe's steps and every other one as many steps as its model FLOPs per step (as
`showo recipe plan` counts them; the image positions differ: 16x16 codes against 2x2 patches of the VAE's
latents) allow in the same FLOPs (`--match steps`: each recipe's own steps instead). CPU seconds are recorded
too. Per objective it reports the digits accuracy of the existing judge (the digits suite at its pinned
settings), the final training loss, CPU seconds per step, sampling CPU seconds per image and image positions
per image, writes `compare/objectives.json` and a PNG sheet (each objective's digits generations, one row per
objective) under `--out`, and prints one JSON line. The loss curves are in TensorBoard: `showo tensorboard
<out>/runs` shows the runs together.

The world (tiny LLM, image tokenizer, code shards; for diffusion the tiny VAE and latent shards) is the
demo's and is reused when present under `--out` (default `demo_out`, so after `make demo` only the
comparison itself runs), as is a finished run. `--budget smoke` runs every step for a handful of steps (the
test's budget).
Run: `.venv/bin/python -m bench.objectives [--objectives mtp,ar,diffusion] [--match flops] [--out demo_out]`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from showo.demo import Demo, budget, cpu_seconds, fresh, recipe_under, stage_finished

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Contender:
    """An objective's tiny stage-1 (digits) and stage-2 (shapes text-to-image) recipes and the shard
    directories their streams read."""

    recipe: str
    stage2: str
    shards: tuple[str, ...]
    vae: bool = False


CONTENDERS: dict[str, Contender] = {
    "mtp": Contender(
        "recipes/tiny/stage1.yaml", "recipes/tiny/stage2.yaml", ("digits-64", "shapes-64", "text")
    ),
    "ar": Contender(
        "recipes/compare/ar.yaml", "recipes/compare/ar-stage2.yaml", ("digits-64", "shapes-64", "text")
    ),
    "diffusion": Contender(
        "recipes/compare/diffusion.yaml",
        "recipes/compare/diffusion-stage2.yaml",
        ("digits-64-latents", "shapes-64-latents", "text"),
        vae=True,
    ),
}
VAE_RECIPE = ROOT / "recipes/vae/tiny.yaml"
LATENT_SHARDS = {"digits-64-latents": ("digits", 64), "shapes-64-latents": ("shapes", 64)}
SAMPLING_PROMPTS = 20


def final_loss(run_dir: str | Path, last: int = 10) -> float | None:
    """Mean of the last `last` logged `train/loss` values (TensorBoard's reader over the run's events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: list[tuple[int, float]] = []
    for folder in sorted({e.parent for e in (Path(run_dir) / "tensorboard").rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            values += [(e.step, e.value) for e in acc.Scalars("train/loss")]
    tail = [v for _, v in sorted(values)[-last:]]
    return round(sum(tail) / len(tail), 4) if tail else None


class Comparison(Demo):
    """The demo's world and steps; per objective a stage-1 run judged by digits, a stage-2 run by geneval-mini."""

    def build_vae_world(self) -> None:
        from data_engine.build import BuildOptions, build
        from showo.recipe import load_recipe
        from showo.vae.training import fit, reusable_export

        recipe = load_recipe(VAE_RECIPE, list(self.plan.tokenizer_overrides))
        recipe.export_dir = str(self.out / "vae-tiny")
        recipe.run.output_dir = str(self.out / "runs")
        self.progress.step("tiny VAE", lambda: fit(recipe), reusable_export(recipe) is not None)
        for name, (kind, resolution) in LATENT_SHARDS.items():
            target = self.out / "shards" / name
            options = BuildOptions(
                source=f"embedded:{kind}",
                out=str(target),
                vae=str(self.out / "vae-tiny"),
                resolution=resolution,
                name=name,
                limit=self.plan.shard_limit,
                workers=0,
                batch_size=64,
                device="cpu",
            )
            weights = self.out / "vae-tiny" / "diffusion_pytorch_model.safetensors"
            self.progress.step(
                f"shards {name}", lambda o=options: build(o), fresh(target / "report.json", weights)
            )

    def contend(self, name: str, flops: float | None = None, stage: int = 1, init_from: str | None = None):
        """Train and export one objective's stage; `flops` (the first objective's training FLOPs) sets its
        steps so that every objective trains on the same compute (None: the recipe's own steps). Returns the
        training figures and the exported model directory."""
        from showo.recipe.plan import plan_recipe
        from showo.training import fit
        from showo.training.export import export

        contender = CONTENDERS[name]
        path = contender.recipe if stage == 1 else contender.stage2
        recipe = recipe_under(ROOT / path, self.out, self.plan.stage_overrides, self.plan.scale)
        recipe.init_from = init_from
        plan = plan_recipe(recipe)
        own = recipe.optim.max_steps
        steps = own if flops is None else max(1, round(flops / plan.flops_per_step))
        base = f"compare-{name}" if stage == 1 else f"compare-{name}-stage{stage}"
        recipe.run.name = base if steps == own else f"{base}-{steps}"
        recipe.optim.max_steps = steps
        record = (
            Path(recipe.run_dir) / "compare.json"
        )  # the training cost, kept for reruns that reuse the run
        label = f"{name} stage {stage}"
        cpu = cpu_seconds()
        self.progress.step(f"train {label}", lambda: fit(recipe), stage_finished(recipe))
        if not self.progress.times[f"train {label}"]["reused"]:
            per_step = round((cpu_seconds() - cpu) / recipe.optim.max_steps, 3)
            record.write_text(json.dumps({"train_cpu_s_per_step": per_step}))
        target = self.out / "models" / recipe.run.name
        self.progress.step(
            f"export {label}", lambda: export(recipe.run_dir, target, recipe.model.image_tokenizer), False
        )
        result = {
            "recipe": path,
            "run": recipe.run.name,
            "steps": steps,
            "train_flops": steps * plan.flops_per_step,
            "flops_per_step": plan.flops_per_step,
            "tokens_per_step": plan.tokens_per_step,
            "train_cpu_s_per_step": json.loads(record.read_text())["train_cpu_s_per_step"]
            if record.is_file()
            else None,
            "final_loss": final_loss(recipe.run_dir),
        }
        return result, target, recipe.run_dir

    def geneval(self, model_dir: Path) -> dict:
        from showo.eval.suites import SuiteSettings, run_suite

        settings = replace(SuiteSettings(), **self.plan.suite_settings)
        out = self.out / "eval" / model_dir.name / "geneval-mini.json"
        return {
            "geneval_mini_overall": run_suite(model_dir, "geneval-mini", out=out, settings=settings)[
                "scores"
            ]["overall"]
        }

    def judge(self, model_dir: Path) -> dict:
        from showo.embedded import digits
        from showo.eval.suites import SuiteSettings, generate_images, load, run_suite

        settings = replace(SuiteSettings(), **self.plan.suite_settings)
        eval_dir = self.out / "eval" / model_dir.name
        scores = run_suite(
            model_dir,
            "digits",
            out=eval_dir / "digits.json",
            settings=settings,
            sheet=eval_dir / "digits.png",
        )
        loaded = load(model_dir)
        prompts = [
            digits.CLASS_NAMES[i % 10] for i in range(min(SAMPLING_PROMPTS, settings.samples_per_class * 10))
        ]
        started = cpu_seconds()
        generate_images(loaded, prompts, settings)
        return {
            "digits_accuracy": scores["scores"]["accuracy"],
            "sampler": scores["sampler"],
            "sampler_options": scores["sampler_options"],
            "sampling_cpu_s_per_image": round((cpu_seconds() - started) / len(prompts), 4),
            "image_positions_per_image": loaded.model.config.num_image_tokens,
        }


def sheet(out: Path, runs: dict[str, str]) -> Path:
    """One labelled row of digits generations per objective (the top of each run's digits eval sheet)."""
    from PIL import Image, ImageDraw

    rows = []
    for name, run in runs.items():
        grid = Image.open(out / "eval" / run / "digits.png").convert("RGB")
        rows.append((name, grid.crop((0, 0, grid.width, min(grid.height, 2 * 66)))))
    width = max(g.width for _, g in rows) + 90
    canvas = Image.new("RGB", (width, sum(g.height + 4 for _, g in rows)), "white")
    y = 0
    for name, grid in rows:
        ImageDraw.Draw(canvas).text((4, y + grid.height // 2), name, fill="black")
        canvas.paste(grid, (90, y))
        y += grid.height + 4
    target = out / "compare" / "objectives.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return target


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default=",".join(CONTENDERS), help="comma-separated, in order")
    parser.add_argument("--out", default="demo_out", help="world and results directory")
    parser.add_argument("--budget", default="full", choices=("full", "smoke"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument(
        "--stages", type=int, default=2, choices=(1, 2), help="1: digits only; 2: then shapes text-to-image"
    )
    parser.add_argument(
        "--match",
        default="flops",
        choices=("flops", "steps"),
        help="train every objective on the first one's FLOPs (default) or on its own recipe's steps",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.objectives.split(",") if n]
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown or not names:
        raise SystemExit(f"objectives: error: unknown objective(s) {unknown}; have {', '.join(CONTENDERS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    out = Path(args.out)
    comparison = Comparison(out, replace(budget(args.budget), scale=args.scale))
    comparison.out.mkdir(parents=True, exist_ok=True)
    comparison.build_llm()
    comparison.train_tokenizer()
    needed = {s for n in names for s in CONTENDERS[n].shards}
    for name in sorted(needed - set(LATENT_SHARDS)):
        comparison.build_shards(name)
    if any(CONTENDERS[n].vae for n in names):
        comparison.build_vae_world()
    started = time.time()
    results: dict[str, dict] = {}
    for name in names:
        first = next(iter(results.values()), None)
        budget_flops = first["train_flops"] if first is not None and args.match == "flops" else None
        trained, model_dir, run_dir = comparison.contend(name, budget_flops)
        results[name] = trained | comparison.judge(model_dir)
        if args.stages == 2:
            budget_flops = (
                first["stage2"]["train_flops"] if first is not None and args.match == "flops" else None
            )
            trained, model_dir, _ = comparison.contend(name, budget_flops, 2, run_dir)
            results[name]["stage2"] = trained | comparison.geneval(model_dir)
    summary = {
        "bench": "objectives",
        "budget": args.budget,
        "scale": args.scale,
        "match": args.match,
        "cpus": os.cpu_count(),
        "objectives": results,
        "sheet": str(sheet(out, {name: r["run"] for name, r in results.items()})),
        "seconds": round(time.time() - started, 1),
    }
    (out / "compare").mkdir(parents=True, exist_ok=True)
    (out / "compare" / "objectives.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
