"""The ``llmnotes`` command's shape: one module per command, flags derived from the configs,
consistent names, and only user errors caught."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

from llmnotes.cli import COMMANDS, main


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def test_every_command_lives_in_its_own_cli_module():
    for name, (module, _) in COMMANDS.items():
        assert module == f"llmnotes.cli.{name.replace('-', '_')}"
        mod = importlib.import_module(module)
        assert callable(getattr(mod, f"add_{name.replace('-', '_')}_arguments"))
        assert callable(getattr(mod, f"run_{name.replace('-', '_')}"))


def test_train_help_lists_every_train_config_field(capsys):
    from llmnotes.train import TrainConfig

    text = _help(capsys, "train")
    missing = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name != "out_dir" and _flag(f.name) not in text]
    assert not missing, f"TrainConfig fields without a flag: {missing}"
    assert "--out " in text  # out_dir's flag
    assert "--init-from" not in text and "--beta1" not in text  # old spellings: accepted, not listed
    assert "how many recent checkpoints to keep on disk" in text  # help comes from the field docs


def test_serve_help_lists_every_serve_config_field(capsys):
    from llmnotes.serve import ServeConfig

    text = _help(capsys, "serve")
    missing = [f.name for f in dataclasses.fields(ServeConfig) if _flag(f.name) not in text]
    assert not missing, f"ServeConfig fields without a flag: {missing}"
    assert "--no-prefix-cache" in text and "gptq" in text


def test_sample_help_lists_every_generation_config_field(capsys):
    from llmnotes.sampling import GenerationConfig

    text = _help(capsys, "sample")
    missing = [f.name for f in dataclasses.fields(GenerationConfig) if _flag(f.name) not in text]
    assert not missing, f"GenerationConfig fields without a flag: {missing}"
    assert "nucleus sampling" in " ".join(text.split())  # help comes from the field docs


def test_sample_flags_build_the_generation_config(capsys):
    """Every kind of flag reaches the GenerationConfig the command decodes with, and a bad value
    is the config's one-line error."""
    import argparse

    from llmnotes.cli.sample import add_sample_arguments, generation_config
    from llmnotes.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser()
    add_sample_arguments(parser)
    args = parser.parse_args(["--top-k", "5", "--bad-words-ids", "12 7", "--bad-words-ids", "9",
                              "--logit-bias", "12=-5", "--stop", ".", "--stop", "!", "--seed", "3",
                              "--compile", "--min-p", "0.1"])
    tok = load_tokenizer()
    config = generation_config(args, tok)
    assert (config.top_k, config.bad_words_ids, config.logit_bias) == (5, [[12, 7], [9]], {12: -5.0})
    assert (config.stop, config.seed, config.compile, config.min_p) == ([".", "!"], 3, True, 0.1)
    assert (config.max_new_tokens, config.temperature, config.eos_id) == (100, 0.8, tok.eot_id)  # the command's defaults
    assert generation_config(parser.parse_args(["--compile", "reduce-overhead"]), tok).compile == "reduce-overhead"
    assert main(["sample", "--top-p", "3", "--device", "cpu"]) == 2
    assert "top_p must be in (0, 1], got 3.0" in capsys.readouterr().err


def test_model_and_device_flags_read_the_same_everywhere(capsys):
    for command in ("sample", "quantize", "export", "serve", "finetune"):
        text = " ".join(_help(capsys, command).split())
        assert "--model" in text and "a shipped model name" in text, command
        assert "--device" in text, command


def test_derived_flags_build_the_config(tmp_path, capsys):
    """`train --keep-checkpoints` and `--lr-decay-steps` (once missing) reach the TrainConfig."""
    from llmnotes.data import load_corpus

    text = tmp_path / "t.txt"
    text.write_text(load_corpus("val")[:40_000], encoding="utf-8")
    out = tmp_path / "m"
    assert main(["train", "--data", str(text), "--preset", "nano", "--max-steps", "2", "--batch-size", "2",
                 "--warmup-steps", "1", "--lr-decay-steps", "7", "--keep-checkpoints", "3", "--eps", "1e-6",
                 "--betas", "0.8", "0.9", "--beta2", "0.99", "--eval-steps", "1", "--no-progress",
                 "--device", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))["train_config"]
    assert (config["lr_decay_steps"], config["keep_checkpoints"], config["eps"]) == (7, 3, 1e-6)
    assert config["betas"] == [0.8, 0.99] and config["progress"] is False
    assert main(["train", "--data", str(text), "--out", str(tmp_path / "x"), "--keep-checkpoints", "0"]) == 2
    assert "keep_checkpoints must be a positive integer" in capsys.readouterr().err


def test_bugs_keep_their_traceback_user_errors_print_one_line(monkeypatch, capsys):
    import llmnotes.cli.sample as sample
    from llmnotes.train import TrainingDiverged

    for err, caught in ((ValueError("bad value"), True), (FileNotFoundError("no file"), True),
                        (TrainingDiverged("loss is nan"), True), (TypeError("a bug"), False),
                        (AttributeError("a bug"), False), (KeyError("a bug"), False)):
        def run(args, err=err):
            raise err

        monkeypatch.setattr(sample, "run_sample", run)
        if caught:
            assert main(["sample"]) == 2
            assert capsys.readouterr().err.startswith("llmnotes sample: error:")
        else:
            with pytest.raises(type(err)):
                main(["sample"])


def test_build_index_is_a_subcommand_and_python_m_rag_still_runs_it(tmp_path, capsys):
    import subprocess
    import sys

    docs = tmp_path / "docs"
    (docs / "part").mkdir(parents=True)
    (docs / "part" / "page.md").write_text("# A page\n\n## BM25\n\nBM25 ranks documents by shared words.\n",
                                           encoding="utf-8")
    out = tmp_path / "snap.jsonl"
    assert main(["build-index", str(docs), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and rows[0]["path"] == "part/page.md"
    again = tmp_path / "again.jsonl"
    proc = subprocess.run([sys.executable, "-m", "llmnotes.rag", "build-index", str(docs), str(again)],
                          capture_output=True, text=True, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
