"""Portability rules for the package's source: text files opened with an explicit encoding."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmnotes"
TEXT_METHODS = {"read_text", "write_text"}


def _mode(call: ast.Call) -> str:
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    # open(path, mode) vs Path.open(mode)
    pos = 0 if isinstance(call.func, ast.Attribute) else 1
    if len(call.args) > pos and isinstance(call.args[pos], ast.Constant):
        return str(call.args[pos].value)
    return "r"


def unencoded_text_io(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        kwargs = {kw.arg for kw in node.keywords}
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        is_open = name == "open" and not (isinstance(func, ast.Attribute) and func.attr == "open"
                                          and isinstance(func.value, ast.Name) and func.value.id in ("gzip", "tarfile"))
        if is_open and "b" not in _mode(node) and "encoding" not in kwargs:
            problems.append(f"{path.name}:{node.lineno} open() without encoding=")
        if name in TEXT_METHODS and "encoding" not in kwargs:
            problems.append(f"{path.name}:{node.lineno} {name}() without encoding=")
    return problems


def test_every_text_file_access_names_an_encoding():
    problems = [p for f in sorted(PACKAGE.rglob("*.py")) for p in unencoded_text_io(f)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_bad_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("open('x')\nopen('y', 'rb')\nimport pathlib\npathlib.Path('z').read_text()\n"
                   "pathlib.Path('w').open('wb')\npathlib.Path('v').open('w')\n", encoding="utf-8")
    assert len(unencoded_text_io(bad)) == 3
