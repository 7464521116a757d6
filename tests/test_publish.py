"""The website is published where the README and the introduction say, by the Pages workflow."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import twins  # noqa: E402

WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def uses(job: str, action: str) -> dict:
    """The step of ``job`` that runs ``action`` (``owner/name``, any version)."""
    matches = [step for step in steps(job) if step.get("uses", "").split("@")[0] == action]
    assert len(matches) == 1, f"the {job} job should use {action} once"
    return matches[0]


def test_readme_and_intro_give_the_published_address():
    url = twins.site_url()
    assert url == "https://rlhf-book.github.io/rlhf-book/"  # today's repository.url
    for page in ("README.md", "book/intro.md"):
        assert url in (ROOT / page).read_text(), f"{page} does not give {url}"


def test_workflow_runs_on_every_push_to_main():
    # YAML reads the bare key `on` as True.
    triggers = workflow().get("on", workflow().get(True))
    assert "main" in triggers["push"]["branches"]
    assert "workflow_dispatch" in triggers


def test_workflow_builds_with_the_readme_command_and_deploys_the_html():
    build = next(step for step in steps("build") if "make book" in step.get("run", ""))
    # The CPU build of the pinned torch, not PyPI's multi-GB CUDA build.
    assert build["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert uses("build", "actions/setup-python")["with"]["python-version"] == "3.11"
    assert uses("build", "actions/upload-pages-artifact")["with"]["path"] == "_build/html"
    uses("deploy", "actions/deploy-pages")
    permissions = workflow()["permissions"]
    assert permissions["pages"] == "write" and permissions["id-token"] == "write"


def test_workflow_caches_the_stage_cache():
    cache = uses("build", "actions/cache")["with"]
    assert cache["path"] == "_build/stage-cache"
    assert "hashFiles('rlhf_lib/**'" in cache["key"] and cache["restore-keys"]


def test_readme_says_how_binder_gets_its_python():
    readme = (ROOT / "README.md").read_text()
    binder = next(line for line in readme.split("\n- ") if line.startswith("**Binder**"))
    assert "runtime.txt" in binder
    assert ".github/workflows/pages.yml" in readme  # the Layout table
