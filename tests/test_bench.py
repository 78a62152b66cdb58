"""`make bench` collects exactly the runnable benchmarks: every script it lists is a program, every program is listed."""

from pathlib import Path

import pytest

from bench import run_all

BENCH = Path(run_all.__file__).resolve().parent


def test_run_all_lists_every_benchmark_program_and_nothing_else():
    programs = sorted(
        p.stem
        for p in BENCH.glob("*.py")
        if p.stem != "run_all" and '__name__ == "__main__"' in p.read_text()
    )
    assert run_all.benchmarks() == programs and "common" not in programs
    assert run_all.benchmarks(["model"]) == ["model"]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.benchmarks(["nope"])


def test_last_json_line_skips_progress_output():
    assert run_all.last_json_line('progress 10%\n{"a": 1}\n[bench] done\n') == {"a": 1}
    assert run_all.last_json_line("no json here") is None


def test_gpu_benchmarks_run_on_the_cpu_at_tiny_size_and_skip_without_cuda(capsys):
    """The accelerator scripts are programs `make bench` can call anywhere: a tiny CPU step, or a skip line."""
    import json

    from bench import gpu_throughput, gpu_tokenizer

    modes = ["--modes", "sdpa,sdpa+pack100", "--steps", "1"]
    gpu_throughput.main(["--preset", "tiny", "--device", "cpu", *modes])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sdpa, packed = line["sdpa"], line["sdpa+pack100"]
    assert sdpa["seq_len"] == 16 + 16 + 3 and sdpa["tokens_per_s"] > sdpa["nonpad_tokens_per_s"] > 0
    assert 0 < sdpa["pad_fraction"] < 1
    assert packed["nonpad_tokens_per_s"] > 0 and "sdpa+pack100_over_sdpa_nonpad_tokens_per_s" in line
    gpu_tokenizer.main([])
    assert json.loads(capsys.readouterr().out.strip()) == {
        "bench": "gpu_tokenizer",
        "skipped": "no CUDA device",
    }


def test_the_objectives_comparison_runs_each_objective_on_one_world(tmp_path, capsys):
    """`python -m bench.objectives` at the smoke budget: every objective trained on the same world, judged by
    the digits classifier, a JSON with each one's costs and a PNG sheet a reader opens."""
    import json

    from PIL import Image

    from bench import objectives

    summary = objectives.main(["--budget", "smoke", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == summary == json.loads((tmp_path / "compare" / "objectives.json").read_text())
    results = summary["objectives"]
    assert list(results) == ["mtp", "ar", "diffusion"]
    for result in results.values():
        assert 0.0 <= result["digits_accuracy"] <= 1.0 and result["train_cpu_s_per_step"] > 0
        assert result["sampling_cpu_s_per_image"] > 0 and result["flops_per_step"] > 0
    assert {n: r["sampler"] for n, r in results.items()} == {
        "mtp": "maskgit",
        "ar": "ar",
        "diffusion": "diffusion",
    }
    positions = {n: r["image_positions_per_image"] for n, r in results.items()}
    assert positions == {"mtp": 256, "ar": 256, "diffusion": 64}  # 16x16 codes; 8x8 patches of 16x16 latents
    assert (
        results["mtp"]["flops_per_step"]
        == results["ar"]["flops_per_step"]
        > results["diffusion"]["flops_per_step"]
    )
    # equal compute: the cheaper diffusion steps buy more of them (within one step's FLOPs of MTP's budget)
    budget = results["mtp"]["train_flops"]
    assert results["ar"]["steps"] == results["mtp"]["steps"] < results["diffusion"]["steps"]
    assert abs(results["diffusion"]["train_flops"] - budget) <= results["diffusion"]["flops_per_step"] / 2
    assert results["diffusion"]["run"] == f"compare-diffusion-{results['diffusion']['steps']}"
    for (
        name,
        result,
    ) in results.items():  # stage 2 (shapes text-to-image) from stage 1, judged by geneval-mini
        assert 0.0 <= result["stage2"]["geneval_mini_overall"] <= 1.0
        assert result["stage2"]["run"].startswith(f"compare-{name}-stage2")
    second = results["diffusion"]["stage2"]
    assert (
        abs(second["train_flops"] - results["mtp"]["stage2"]["train_flops"]) <= second["flops_per_step"] / 2
    )
    with Image.open(summary["sheet"]) as sheet:
        assert sheet.format == "PNG" and sheet.height > 0
    (tmp_path / "models").rename(tmp_path / "models-first")  # a rerun reuses the world and the runs
    again = objectives.main(["--objectives", "ar", "--budget", "smoke", "--out", str(tmp_path)])
    assert (
        again["objectives"]["ar"]["train_cpu_s_per_step"]
        == summary["objectives"]["ar"]["train_cpu_s_per_step"]
    )


def test_the_diffusion_sampling_bench_times_cached_and_recompute_side_by_side(capsys):
    """One JSON line with both timings per grid; the bench itself checks that both give the same latents."""
    import json

    from bench import diffusion_sampling

    argv = ["--hidden", "64", "--layers", "1", "--max-text-len", "16", "--steps", "2", "--repeats", "1"]
    result = diffusion_sampling.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    for grid, positions in (("grid_8x8", 64), ("grid_16x16", 256)):
        entry = result[grid]
        assert entry["image_positions"] == positions and entry["cached_s"] > 0 and entry["recompute_s"] > 0
        assert entry["speedup"] > 0
    assert result["steps"] == 2 and result["guidance"] == 2.0 and result["latent_channels"] == 8


def test_the_packing_bench_checks_equal_losses_and_reports_each_layout(capsys):
    """`python -m bench.throughput`: every packed layout's losses equal the padded ones before timing (it
    asserts so), and the JSON line reports pad shares consistent with the layouts."""
    import json

    from bench import throughput

    throughput.main(["--steps", "1"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["pad_fraction_packed_one_row"] == 0.0
    assert 0 < line["pad_fraction_packed_580"] < line["pad_fraction_padded"] < 1
    assert abs(line["position_bound"] - 1 / (1 - line["pad_fraction_padded"])) < 2e-3
    for mode in ("packed_one_row", "packed_580", "dense_mask_packed_580"):
        assert line[f"{mode}_over_padded"] > 0


def test_the_packing_bench_reads_the_captions_of_built_shards(shapes_shards, capsys):
    """`--captions` takes a built shard's captions (what the user's data looks like); a pattern that
    matches no shard is one line on stderr, exit 2."""
    import json

    from bench import throughput

    pattern = str(shapes_shards / "*.tar")
    throughput.main(["--steps", "1", "--captions", pattern])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["captions"] == pattern and line["pad_fraction_packed_one_row"] == 0.0
    assert len(throughput.shard_captions(pattern)) > 0
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--captions", str(shapes_shards / "none-*.tar")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shard matches" in err[0]
