"""What the committed chapters say and show, read from the notebooks (no build needed): the
book speaks to its reader, without the project's bookkeeping words, and every figure fits the
book's column."""
from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))

# the project's process, not the reader's lesson; a cited repository's own thread ("issue #25"
# of an official code base) is a source and stays
PROCESS_WORDS = re.compile(
    r"(?i:\b(issues?(?! #\d)|sessions?|source documents?|budgets?)\b)|\bOVER\b")
# the widest figure the book's column shows at full size (jupyter-book's article column is 752
# CSS pixels at the rendered test's 1280-pixel window); a wider one is shrunk, and its text
# with it
MAX_FIGURE_PX = 750


def _texts(nb: dict):
    """(cell index, text) of every markdown cell and every text output of a notebook."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            yield i, "".join(cell["source"])
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield i, "".join(out["text"])
            for kind in ("text/markdown", "text/plain", "text/html"):
                if kind in out.get("data", {}):
                    text = "".join(out["data"][kind])
                    # a widget panel's figures are data URIs, not words
                    yield i, re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", text)


def _png_size(b64: str) -> tuple[int, int]:
    raw = base64.b64decode(b64[:64])
    return struct.unpack(">II", raw[16:24])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_process_words_in_the_book(path):
    nb = json.loads(path.read_text())
    found = [(i, m.group(0), text[max(0, m.start() - 40):m.end() + 40])
             for i, text in _texts(nb) for m in PROCESS_WORDS.finditer(text)]
    assert found == [], f"{path.name}: words of the project's process: {found}"


def test_the_process_word_check_bites():
    assert PROCESS_WORDS.search("the issue that asked for this chapter")
    assert PROCESS_WORDS.search("the book's source documents") and PROCESS_WORDS.search("OVER")
    assert PROCESS_WORDS.search("a run budget") and PROCESS_WORDS.search("a session")
    assert not PROCESS_WORDS.search("as quoted in AdvSemiSeg issue #32; runs over 15 minutes")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_figure_fits_the_column(path):
    nb = json.loads(path.read_text())
    wide = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                w, h = _png_size("".join(png) if isinstance(png, list) else png)
                if w > MAX_FIGURE_PX:
                    wide.append((i, w, h))
            svg = "".join(out.get("data", {}).get("image/svg+xml", ""))
            size = re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', svg)
            if size and float(size.group(1)) * 4 / 3 > MAX_FIGURE_PX:  # 1 pt = 4/3 CSS px
                wide.append((i, round(float(size.group(1)) * 4 / 3), "svg"))
    assert wide == [], f"{path.name}: figures wider than {MAX_FIGURE_PX} px (cell, w, h): {wide}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_diagrams_are_outputs_drawn_from_a_dot_file(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        assert "```{graphviz}" not in src, f"{path.name}: DOT text in a cell, not a drawn diagram"
        for name in re.findall(r'show_diagram\("([^"]+)"\)', src):
            assert (ROOT / "book" / "diagrams" / f"{name}.dot").exists(), name
            kinds = {k for out in cell.get("outputs", []) for k in out.get("data", {})}
            assert "image/svg+xml" in kinds, f"{path.name}: diagram {name} has no drawn output"
