"""The GitHub workflows cannot run on these machines; check them structurally and by schema."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name):
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); accept both spellings.
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    data["on"] = data.get("on", data.get(True))
    return data


def test_workflows_match_github_schema():
    pytest.importorskip("check_jsonschema", reason="pip install -r requirements.txt installs it")
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                             "vendor.github-workflows", *files],
                            capture_output=True, text=True, encoding="utf-8")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_workflow_runs_ci_and_an_os_python_matrix():
    wf = load("test.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    steps = " ".join(str(s.get("run", "")) for s in wf["jobs"]["ci"]["steps"])
    assert "bash .ci/run" in steps
    matrix = wf["jobs"]["matrix"]["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert set(matrix["python"]) == {"3.10", "3.11", "3.12", "3.13"}
    runs = [s.get("run", "") for s in wf["jobs"]["matrix"]["steps"]]
    assert "pip install -r requirements.txt" in runs and "pytest" in runs


def test_pages_deploy_only_after_tests_pass():
    wf = load("pages.yml")
    trigger = wf["on"]["workflow_run"]
    assert trigger["workflows"] == ["test"] and trigger["types"] == ["completed"]
    assert "success" in wf["jobs"]["build"]["if"]
    assert wf["jobs"]["deploy"]["needs"] == "build"


def test_ci_script_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -r requirements.txt && pytest" in readme
    assert "\npytest\n" in ci and "mkdocs build --strict" in ci
    assert "-eq 5" in ci  # "no tests collected" fails the run
