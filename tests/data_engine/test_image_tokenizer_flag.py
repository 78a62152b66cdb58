"""`showo-data build|inspect --image-tokenizer` names the image tokenizer; `--tokenizer` stays an alias."""

import pytest

from data_engine.cli import main


@pytest.mark.parametrize("flag", ["--image-tokenizer", "--tokenizer"])
def test_build_reads_the_image_tokenizer_flag(capsys, tmp_path, flag):
    argv = ["build", "--out", str(tmp_path / "out"), "--no-progress", "--source", "embedded:shapes"]
    assert main([*argv, flag, str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("showo-data: error: ") and "image tokenizer not found" in err and err.count("\n") == 1
    )


def test_the_help_names_the_image_tokenizer(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "--image-tokenizer IMAGE_TOKENIZER, --tokenizer IMAGE_TOKENIZER" in capsys.readouterr().out
