"""llmnotes.recorded: the reader pages use to quote benchmarks/RESULTS.md instead of typing numbers."""

import pytest

from llmnotes.recorded import command, machine, number, result, results_path, row, section, table, tables

TEXT = """# Benchmark results

## Speed (`bench.py`)

Command: `python bench.py --write`. Machine: x86_64.

| decoder | tokens/s | vs base |
|---|---:|---:|
| `base` | 10.0 | 1.00x |
| fast | 1,234.5 | **2.5x** |

### Notes

| a | b |
|---|---|
| 1 | 2 |

## Other

    python other.py --flag
"""


def test_section_stops_at_the_next_heading_of_its_level():
    body = section("Speed", TEXT)
    assert "### Notes" in body and "## Other" not in body
    assert "Notes" not in section("Notes", TEXT) and "| 1 | 2 |" in section("Notes", TEXT)


def test_tables_rows_and_numbers():
    assert len(tables("Speed", TEXT)) == 2
    rows = table("Speed", 0, TEXT)
    assert row(rows, "decoder", "base")["tokens/s"] == "10.0"  # backticks ignored
    assert number(row(rows, "decoder", "fast")["tokens/s"]) == 1234.5
    assert number(row(rows, "decoder", "fast")["vs base"]) == 2.5
    assert number("2.70e-03") == pytest.approx(0.0027) and number("95.3%") == 95.3


def test_commands_inline_and_indented():
    assert command("Speed", TEXT) == "python bench.py --write"
    assert command("Other", TEXT) == "python other.py --flag"


def test_machine_line():
    text = TEXT.replace("Machine: x86_64.", "CPU: AMD EPYC (avx512_bf16 yes, amx no), no GPU; torch 2.13.0+cpu.")
    assert machine("Speed", text) == "AMD EPYC (avx512_bf16 yes, amx no), no GPU"
    with pytest.raises(KeyError, match="CPU"):
        machine("Other", text)
    # the CPU decode record pages quote names its machine, and has the llama.cpp rows
    assert "avx512_bf16" in machine("Decoding on CPU")
    gpt2 = [t for t in tables("`gpt2` preset") if t and "decoder" in t[0]]
    assert len(gpt2) == 2 and all(row(t, "decoder", "llama.cpp F32") for t in gpt2)


def test_errors_name_what_is_missing():
    with pytest.raises(KeyError, match="Nope"):
        section("Nope", TEXT)
    with pytest.raises(IndexError, match="2 table"):
        table("Speed", 5, TEXT)
    with pytest.raises(KeyError, match="slow"):
        row(table("Speed", 0, TEXT), "decoder", "slow")
    with pytest.raises(ValueError, match="no number"):
        number("n/a")


def test_env_var_overrides_the_checkout_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNOTES_RESULTS", str(tmp_path / "missing.md"))
    with pytest.raises(FileNotFoundError, match="LLMNOTES_RESULTS"):
        results_path()
    (tmp_path / "r.md").write_text(TEXT, encoding="utf-8")
    monkeypatch.setenv("LLMNOTES_RESULTS", str(tmp_path / "r.md"))
    assert number(table("Speed")[0]["tokens/s"]) == 10.0


@pytest.mark.parametrize("title, column, names", [
    ("Decoding (`benchmarks/decode.py`): gpt2, tiny", "decoder", ["hf dynamic", "llmnotes", "llmnotes prepare_for_decode",
                             "llmnotes speculative", "llmnotes compile"]),
    ("GGUF export vs llama.cpp", "file", ["F32", "F16", "Q8_0", "Q4_0"]),
])
def test_the_sections_pages_quote_exist(title, column, names):
    rows = table(title)
    for name in names:
        row(rows, column, name)
    assert command("Decoding (`benchmarks/decode.py`): gpt2, tiny") and command("Math chapter")
    assert any("Value" in r["implementation"] for r in table("Math chapter", 1))


def test_finetune_run_reads_a_recorded_run_and_names_the_known_ones():
    from llmnotes.recorded import finetune_run

    run = finetune_run("instruct")
    assert run["command"].startswith("llmnotes finetune --task instruct") and 0 <= run["after"]["score"] <= 1
    with pytest.raises(FileNotFoundError, match="instruct_lora"):
        finetune_run("no-such-run")


def test_result_reads_a_benchmark_json_and_names_the_known_ones(tmp_path, monkeypatch):
    (tmp_path / "RESULTS.md").write_text(TEXT, encoding="utf-8")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "speed.json").write_text('{"command": "python bench.py", "x": [1, 2]}',
                                                     encoding="utf-8")
    monkeypatch.setenv("LLMNOTES_RESULTS", str(tmp_path / "RESULTS.md"))
    assert result("speed") == {"command": "python bench.py", "x": [1, 2]}
    with pytest.raises(FileNotFoundError, match=r"'slow'.*\['speed'\]"):
        result("slow")


def test_the_distillation_record_has_every_seed_and_variant():
    rec = result("distill")
    assert rec["command"].startswith("python benchmarks/distill.py")
    for run in rec["runs"]:
        assert set(run["curve"]) == set(rec["variants"])
        assert all(points[-1][0] == rec["steps"] for points in run["curve"].values())
