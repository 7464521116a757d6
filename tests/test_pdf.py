"""The PDF of the book (`make pdf`, tools/pdf.py): page order, paths, contents, links, merging.

The pure parts run everywhere and fast. The merging tests build small PDFs with pypdf itself.
The last test prints the real built website with Chromium; it is marked `browser`, like the other
tests that need `make book` first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import pdf  # noqa: E402  (tools/pdf.py)

BASE = "http://127.0.0.1:8123/"
PUBLIC = "https://rlhf-book.github.io/rlhf-book/"


def write_toc(tmp_path: Path, toc: dict) -> Path:
    path = tmp_path / "_toc.yml"
    path.write_text(yaml.safe_dump(toc))
    return path


def test_pages_follow_the_toc_root_first_then_each_part_in_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = pdf.toc_pages()
    expected = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [p.file for p in pages] == expected
    assert pages[0].part is None and pages[0].html == "book/intro.html"
    captions = [part["caption"] for part in toc["parts"]]
    assert list(dict.fromkeys(p.part for p in pages[1:])) == captions


def test_sections_and_a_toc_without_parts(tmp_path):
    toc = write_toc(
        tmp_path,
        {
            "root": "book/intro",
            "parts": [
                {
                    "caption": "One",
                    "chapters": [
                        {"file": "book/a", "sections": [{"file": "book/a1"}, {"file": "book/a2"}]},
                        {"file": "book/b.md"},
                    ],
                }
            ],
        },
    )
    pages = pdf.toc_pages(toc)
    assert [(p.file, p.part) for p in pages] == [
        ("book/intro", None),
        ("book/a", "One"),
        ("book/a1", "One"),
        ("book/a2", "One"),
        ("book/b.md", "One"),
    ]
    assert pages[-1].html == "book/b.html"  # a file named with its suffix
    flat = write_toc(tmp_path, {"root": "intro", "chapters": [{"file": "x"}, {"file": "y"}]})
    assert [(p.file, p.part) for p in pdf.toc_pages(flat)] == [
        ("intro", None),
        ("x", None),
        ("y", None),
    ]


def test_output_paths_put_the_copy_in_the_sites_static_folder(tmp_path):
    out, copy = pdf.output_paths(tmp_path / "pdf" / "book.pdf", tmp_path / "html")
    assert out == tmp_path / "pdf" / "book.pdf"
    assert copy == tmp_path / "html" / "_static" / "rlhf-book.pdf"
    assert pdf.OUT == ROOT / "_build" / "pdf" / "rlhf-book.pdf"
    # book/intro.md links to the copy, relative to its own page (book/intro.html)
    assert "../_static/rlhf-book.pdf" in (ROOT / "book" / "intro.md").read_text()


def test_a_missing_or_partial_site_says_to_run_make_book(tmp_path):
    pages = [pdf.TocPage("book/intro", None), pdf.TocPage("book/a", "One")]
    with pytest.raises(SystemExit, match="run `make book` first"):
        pdf.check_site(tmp_path, pages)
    (tmp_path / "index.html").write_text("<meta http-equiv='refresh'>")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text("<h1>Intro</h1>")
    assert pdf.missing_pages(tmp_path, pages) == ["book/a.html"]
    with pytest.raises(SystemExit, match=r"lacks 1 page\(s\) of _toc.yml \(book/a.html\)"):
        pdf.check_site(tmp_path, pages)
    assert pdf.check_site(tmp_path, pages, skip_missing=True) == pages[:1]  # an older build
    (tmp_path / "book" / "a.html").write_text("<h1>A</h1>")
    assert pdf.check_site(tmp_path, pages) == pages  # complete: every page, no error


def printed(tmp_path: Path, sizes: dict[str, int]) -> list[pdf.PrintedPage]:
    """Printed pages of a toy book: {html path: number of PDF pages}, made with pypdf."""
    from pypdf import PdfWriter

    entries = []
    for index, (html_path, n_pages) in enumerate(sizes.items()):
        writer = PdfWriter()
        for _ in range(n_pages):
            writer.add_blank_page(width=595.92, height=842.88)
        path = tmp_path / f"{index}.pdf"
        writer.write(path)
        part = None if index == 0 else ("Part A" if index < 3 else "Part B")
        page = pdf.TocPage(html_path.removesuffix(".html"), part)
        entries.append(pdf.PrintedPage(page, f"Title {index}", path, n_pages))
    return entries


def test_front_matter_lists_parts_and_the_page_each_section_starts_on(tmp_path):
    pytest.importorskip("pypdf")  # printed() makes its PDFs with it
    pages = printed(tmp_path, {"book/intro.html": 3, "book/a.html": 2, "book/b.html": 5,
                               "book/c.html": 1})  # fmt: skip
    text = pdf.front_matter_html("A <Book>", "Emma Bastien", pages, first_page=3, note="n & b")
    assert "A &lt;Book&gt;" in text and "n &amp; b" in text and "Emma Bastien" in text
    numbers = [int(chunk.split("</span>")[0]) for chunk in text.split('class="number">')[1:]]
    assert numbers == [3, 6, 8, 13]  # each starts after the ones before it
    assert text.count('class="part"') == 2  # the root page belongs to no part
    assert text.index("Part A") < text.index("Title 1") < text.index("Part B")


def test_cover_note_says_where_the_live_book_is_and_what_this_copy_holds():
    import datetime

    note = pdf.cover_note(PUBLIC, "abc1234567", False, datetime.date(2026, 11, 29))
    assert note.startswith("Printed on 29 November 2026") and "abc1234567" in note
    assert PUBLIC in note and "solutions are left out" in note
    assert "solutions are printed" in pdf.cover_note(PUBLIC, None, True, datetime.date.today())


def test_links_go_to_pages_of_the_pdf_or_to_the_published_site():
    starts = {"book/intro.html": 2, "book/a.html": 5, "book/b.html": 9}
    ids = {"book/a.html": {"exercises": (7, 400.0)}}

    def target(uri):
        return pdf.link_target(uri, BASE, ids, starts, PUBLIC)

    assert target(BASE + "book/a.html") == (5, None)
    assert target(BASE + "book/a.html#exercises") == (7, 400.0)
    assert target(BASE + "book/a.html#unknown-id") == (5, None)  # the page's top
    assert target(BASE + "index.html") == (2, None) and target(BASE) == (2, None)
    assert target(BASE + "_sources/book/a.ipynb") == PUBLIC + "_sources/book/a.ipynb"
    assert target(BASE + "genindex.html#A") == PUBLIC + "genindex.html#A"
    assert target("https://arxiv.org/abs/1706.03762") is None  # outside links stay as they are


def test_page_number_stream_centres_the_number():
    stream = pdf.page_number_stream(12, page_width=600.0, bottom=20.0, size=10).decode()
    assert "(12) Tj" in stream and "/RlhfPdfNumber 10 Tf" in stream
    x = float(stream.split(" Td")[0].split()[-2])
    assert x == pytest.approx((600 - 2 * 5.56) / 2)


def test_assemble_merges_with_bookmarks_links_and_page_numbers(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from pypdf.annotations import Link
    from pypdf.generic import ArrayObject, NameObject, TextStringObject

    pages = printed(tmp_path, {"book/intro.html": 2, "book/a.html": 2, "book/b.html": 3,
                               "book/c.html": 1})  # fmt: skip
    # Page a links to page b, to an id of its own kept as a named destination, and to a notebook.
    writer = pypdf.PdfWriter(clone_from=pages[1].pdf)
    writer.add_named_destination("summary", 1)
    for uri in (BASE + "book/b.html", BASE + "_sources/book/a.ipynb"):
        writer.add_annotation(0, Link(rect=(10, 10, 50, 20), url=uri))
    named = Link(rect=(10, 30, 50, 40), target_page_index=0)
    writer.add_annotation(0, named)
    annotations = writer.pages[0]["/Annots"]
    annotations[-1].get_object()[NameObject("/Dest")] = TextStringObject("summary")
    writer.write(pages[1].pdf)
    front_writer = pypdf.PdfWriter()
    front_writer.add_blank_page(width=595.92, height=842.88)
    front_writer.add_blank_page(width=595.92, height=842.88)
    front_path = tmp_path / "front.pdf"
    front_writer.write(front_path)

    out = tmp_path / "out" / "book.pdf"
    counts = pdf.assemble(front_path, pages, out, BASE, PUBLIC, title="Toy book")
    assert counts == {"pages": 10, "front_pages": 2, "sections": 4, "links_in_pdf": 2,
                      "links_to_website": 1}  # fmt: skip

    reader = pypdf.PdfReader(out)
    assert len(reader.pages) == 10 and reader.metadata.title == "Toy book"
    outline = reader.outline
    flat = [item for entry in outline for item in (entry if isinstance(entry, list) else [entry])]
    titles = {item.title: reader.get_destination_page_number(item) for item in flat}
    assert titles == {"Contents": 1, "Title 0": 2, "Part A": 4, "Title 1": 4, "Title 2": 6,
                      "Part B": 9, "Title 3": 9}  # fmt: skip
    assert isinstance(outline[3], list) and len(outline[3]) == 2  # Part A holds its two pages
    assert [item.title for item in pdf_page_bookmarks(outline)] == [f"Title {i}" for i in range(4)]
    # Page numbers on every page but the cover
    assert "2" in reader.pages[1].extract_text() and "10" in reader.pages[9].extract_text()
    assert reader.pages[0].extract_text().strip() == ""
    # The links of page a (PDF page index 4)
    links = [a.get_object() for a in reader.pages[4]["/Annots"]]
    index = {page.indirect_reference.idnum: i for i, page in enumerate(reader.pages)}
    dests = [index[link["/Dest"][0].idnum] for link in links if "/Dest" in link]
    assert sorted(dests) == [5, 6]  # its own "summary" (its second page), and page b
    uris = [link["/A"]["/URI"] for link in links if "/A" in link]
    assert uris == [PUBLIC + "_sources/book/a.ipynb"]
    names = reader.trailer["/Root"].get("/Names")
    assert names is None or "/Dests" not in names.get_object()  # no clashing names carried over
    assert isinstance(links[0].get("/Rect"), ArrayObject)


def pdf_page_bookmarks(outline: list) -> list:
    """The bookmarks of pages: those inside a part (a part's bookmark is followed by the list of
    its pages) and those at the top level that are neither a part nor the contents."""
    items = []
    for index, entry in enumerate(outline):
        if isinstance(entry, list):
            items += entry
        elif entry.title != "Contents" and not (
            index + 1 < len(outline) and isinstance(outline[index + 1], list)
        ):
            items.append(entry)
    return items


@pytest.mark.browser
def test_the_built_website_prints_to_one_pdf_with_a_bookmark_per_page(tmp_path):
    """Prints _build/html (run `make book` first) into a temporary folder: the website itself
    gets no copy of the PDF."""
    pypdf = pytest.importorskip("pypdf")
    if not (pdf.HTML / "index.html").exists():
        pytest.fail("No built website in _build/html: run `make book` first.")
    out, copy, counts = pdf.build_pdf(pdf.HTML, tmp_path / "book.pdf", copy_to_site=False)
    assert copy is None and out.exists()
    pages = pdf.toc_pages()
    reader = pypdf.PdfReader(out)
    assert counts["sections"] == len(pages) and len(reader.pages) == counts["pages"]
    page_items = pdf_page_bookmarks(reader.outline)
    assert len(page_items) == len(pages)  # one bookmark per page of the toc
    starts = [reader.get_destination_page_number(item) for item in page_items]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert counts["links_in_pdf"] > 0
    text = reader.pages[1].extract_text()  # the contents
    assert all(part in text for part in {p.part for p in pages if p.part})
