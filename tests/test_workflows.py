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
    assert trigger["branches"] == ["main"]
    assert "conclusion == 'success'" in wf["jobs"]["stage"]["if"]
    assert "event == 'push'" in wf["jobs"]["stage"]["if"]  # not a pull request's run
    assert wf["jobs"]["deploy"]["needs"] == "stage"


def _step(steps, uses_prefix):
    found = [i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith(uses_prefix)]
    assert len(found) == 1, f"expected one {uses_prefix} step, found {len(found)}"
    return found[0], steps[found[0]]


def test_test_workflow_uploads_the_site_it_tested():
    steps = load("test.yml")["jobs"]["ci"]["steps"]
    ci_step = next(i for i, s in enumerate(steps) if s.get("run") == "bash .ci/run")
    at, upload = _step(steps, "actions/upload-artifact@")
    assert at > ci_step, "the upload must come after .ci/run built and tested the site"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"--site-dir {upload['with']['path']}\n" in ci  # the folder .ci/run built and tested
    assert upload["with"]["name"] == "site-${{ github.sha }}"
    assert upload["with"]["if-no-files-found"] == "error"


def test_pages_deploys_the_tested_artifact_without_rebuilding():
    wf = load("pages.yml")
    steps = wf["jobs"]["stage"]["steps"]
    commands = " ".join(str(s.get("run", "")) for job in wf["jobs"].values() for s in job["steps"])
    assert "mkdocs" not in commands and "pip" not in commands and ".ci/run" not in commands
    assert not any(str(s.get("uses", "")).startswith("actions/checkout") for s in steps)
    at, download = _step(steps, "actions/download-artifact@")
    upload_name = load("test.yml")["jobs"]["ci"]["steps"]
    upload_name = _step(upload_name, "actions/upload-artifact@")[1]["with"]["name"]
    # The artifact of the test run that triggered this one, for the commit that run tested.
    assert download["with"]["name"] == upload_name.replace("github.sha", "github.event.workflow_run.head_sha")
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    assert "github.token" in download["with"]["github-token"]
    assert wf["permissions"]["actions"] == "read"
    pages_at, pages = _step(steps, "actions/upload-pages-artifact@")
    assert pages_at > at and pages["with"]["path"] == download["with"]["path"]
    _step(wf["jobs"]["deploy"]["steps"], "actions/deploy-pages@")


def test_ci_never_uses_the_exec_cache():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    cache_off = ci.index("export LLMNOTES_EXEC_CACHE=0")
    assert cache_off < ci.index("mkdocs build --strict") and cache_off < ci.index("\npytest\n")


def test_ci_script_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -r requirements.txt && pytest" in readme
    assert "\npytest\n" in ci and "mkdocs build --strict" in ci
    assert "-eq 5" in ci  # "no tests collected" fails the run
