"""The demo's orchestration at the smoke budget (a step or two everywhere): every step's output lands where
the next step and the user look for it, stages chain through init_from, eval results record the settings
they ran with, and a rerun reuses every output instead of redoing it."""

import json

import pytest
from PIL import Image

from showo import demo
from showo.errors import ShowoError
from showo.eval.suites import SuiteSettings


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert demo.main(["--out", str(out), "--budget", "smoke"]) == 0
    return out


def test_every_step_writes_its_output(smoke):
    assert (smoke / "tiny-llm" / "config.json").is_file()
    assert (smoke / "tokenizer" / "config.json").is_file()
    for name in demo.STREAMS:
        report = json.loads((smoke / "shards" / name / "report.json").read_text())
        assert report, name
        assert list((smoke / "shards" / name).glob(f"{name}-*.tar")), name
    for stage in ("stage1", "instruct"):
        assert (smoke / "models" / stage / "config.json").is_file()
        assert (smoke / "models" / stage / "image_tokenizer" / "config.json").is_file()
    sheet = Image.open(smoke / "sheet.png")
    sheet.verify()
    assert sheet.format == "PNG"


def test_stages_chain_through_init_from(smoke):
    from showo.recipe import load_recipe

    previous = None
    for stage in demo.STAGES:
        recipe = load_recipe(smoke / "runs" / f"tiny-{stage}" / "recipe.yaml")
        assert recipe.init_from == (None if previous is None else str(smoke / "runs" / f"tiny-{previous}"))
        assert recipe.model.image_tokenizer == str(smoke / "tokenizer")
        assert all(str(smoke) in p for s in recipe.data.streams.values() if s for p in s.shards)
        assert demo.stage_finished(recipe)
        previous = stage


def test_results_record_settings_and_goals(smoke):
    summary = json.loads((smoke / "summary.json").read_text())
    assert [row["suite"] for row in summary["goals"]] == list(demo.GOALS)
    for row in summary["goals"]:
        assert row["met"] == (row["value"] >= row["goal"])
    expected = SuiteSettings(**demo.budget("smoke").suite_settings)
    for suite, model in demo.SUITE_MODELS.items():
        result = json.loads((smoke / "eval" / f"{suite}.json").read_text())
        assert result["suite"] == suite
        assert result["ckpt"].endswith("tokenizer" if model == "tokenizer" else f"models/{model}")
        assert result["settings"]["steps"] == expected.steps
        assert result["settings"]["samples_per_class"] == expected.samples_per_class
    assert "tokenizer photos psnr" in demo.table(summary)
    met = {**summary, "goals": [{**row, "met": True} for row in summary["goals"]]}
    missed = {**met, "goals": [{**met["goals"][0], "met": False}, *met["goals"][1:]]}
    assert demo.LONGER_TRAINING not in demo.table(met)
    assert demo.LONGER_TRAINING in demo.table(missed)


def test_rerun_reuses_every_output(smoke, capsys):
    before = {
        p: p.stat().st_mtime_ns for p in smoke.rglob("*") if p.is_file() and p.suffix in {".ckpt", ".tar"}
    }
    assert demo.main(["--out", str(smoke), "--budget", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count("reusing existing output") == 1 + 1 + len(demo.STREAMS) + len(demo.STAGES) + 2 + 5 + 1
    assert " ...\n" not in out
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_unknown_budget(capsys):
    with pytest.raises(ShowoError, match="unknown demo budget 'huge'"):
        demo.budget("huge")
    assert demo.main(["--budget", "huge"]) == 2
    assert (
        capsys.readouterr().err.strip() == "showo: error: unknown demo budget 'huge'; expected full or smoke"
    )
