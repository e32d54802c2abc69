"""The built HTML book, opened page by page in headless Chromium, offline.

Checks, for every page of ``_toc.yml``: a screenshot that is not blank; every figure, table and
widget of the page's notebook is in the page (``img`` tags whose data or file exists; ``table``
tags; the saved widget state); the widgets were rendered by the book's own JavaScript (the DOM
after the scripts ran holds the views, sliders included); no script or stylesheet comes from
the network; and the build wrote no error reports.

It needs a built book: ``make render`` (part of ``make test``) runs it after ``make
book-strict`` with ``SEMIBOOK_BOOK_HTML=_build/html``; without that variable it uses
``_build/html`` when present and skips otherwise. Without Debian's ``chromium`` it skips,
unless ``SEMIBOOK_REQUIRE_CHROMIUM`` is set (CI sets it), then it fails.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE_RULE = re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?$", re.M)
FIGURE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Injected into a copy of a page with a slider: once the widgets are rendered, press the right
# arrow key on the first slider's handle and record the slider's readout and the text of the
# panel beside it (the jslinked Stack: its visible text and the alt text of its visible images)
# before and after, in an attribute of <body>.
MOVE_SCRIPT = """<script>
(function poll(n) {
  var handle = document.querySelector('.widget-slider .noUi-handle');
  if (!handle) {
    if (n < 200) { setTimeout(function () { poll(n + 1); }, 50); }
    else { document.body.setAttribute('data-move', '{"error": "no slider"}'); }
    return;
  }
  var box = handle.closest('.widget-vbox') || handle.parentElement;
  var look = function () {
    var shown = Array.from(box.lastElementChild.querySelectorAll('img'))
      .filter(function (i) { return i.offsetParent !== null; })
      .map(function (i) { return i.alt; }).join('|');
    return {panel: box.lastElementChild.innerText + '|' + shown,
            readout: box.querySelector('.widget-readout').innerText};
  };
  var before = look();
  handle.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
  setTimeout(function () {
    document.body.setAttribute('data-move', JSON.stringify({before: before, after: look()}));
  }, 500);
})(0);
</script>"""
# Every table of the article must be readable in full: it fits the article's column, or it
# sits in a box that scrolls sideways (overflow-x auto or scroll) and that box fits the column.
TABLES_SCRIPT = """<script>
window.addEventListener('load', function () {
  var article = document.querySelector('article') || document.body;
  var right = article.getBoundingClientRect().right + 1;
  var bad = [];
  document.querySelectorAll('article table').forEach(function (t, i) {
    var box = t.parentElement, scroller = null;
    while (box && box !== article) {
      var o = getComputedStyle(box).overflowX;
      if (o === 'auto' || o === 'scroll') { scroller = box; break; }
      box = box.parentElement;
    }
    var edge = (scroller || t).getBoundingClientRect().right;
    if (edge > right) {
      bad.push({table: i, right: Math.round(edge), column: Math.round(right),
                scrolls: !!scroller, head: (t.innerText || '').slice(0, 60)});
    }
  });
  // figures: an image drawn wider than the article's content box would be shrunk to fit
  var inner = article.clientWidth, wide = [];
  document.querySelectorAll('article img').forEach(function (im, i) {
    if (im.naturalWidth > inner + 1) {
      wide.push({figure: i, width: im.naturalWidth, column: inner,
                 src: (im.getAttribute('src') || '').slice(0, 60)});
    }
  });
  document.body.setAttribute('data-tables', JSON.stringify(
    {count: document.querySelectorAll('article table').length, bad: bad,
     wide_figures: wide}));
  // display equations, once MathJax has typeset them: none runs past the column
  var typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) ||
                Promise.resolve();
  typeset.then(function () {
    var math = [];
    document.querySelectorAll('article mjx-container[display="true"]').forEach(function (m, i) {
      var inner = (m.firstElementChild || m).getBoundingClientRect();
      if (inner.right > right) {
        math.push({equation: i, right: Math.round(inner.right), column: Math.round(right),
                   text: (m.getAttribute('aria-label') || m.innerText || '').slice(0, 60)});
      }
    });
    document.body.setAttribute('data-math', JSON.stringify(math));
  });
});
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--virtual-time-budget=10000", "--window-size=1280,2400"]


def _html_dir() -> Path:
    env = os.environ.get("SEMIBOOK_BOOK_HTML")
    if env:
        path = Path(env) if Path(env).is_absolute() else ROOT / env
        assert (path / "index.html").exists(), f"no built book in {path}: run `make book-strict`"
        return path
    path = ROOT / "_build" / "html"
    if not (path / "index.html").exists():
        pytest.skip("no built book in _build/html: run `make book` (or `make test`)")
    return path


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("SEMIBOOK_REQUIRE_CHROMIUM"):
            pytest.fail("SEMIBOOK_REQUIRE_CHROMIUM is set but chromium is not installed "
                        "(apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); set "
                    "SEMIBOOK_REQUIRE_CHROMIUM=1 to make this a failure")
    return exe


def _pages() -> list[str]:
    """Every page of the table of contents, in order (paths without suffix)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(node):
        for part in node.get("parts", []) + node.get("chapters", []) + node.get("sections", []):
            if "file" in part:
                out.append(part["file"])
            walk(part)
    walk(toc)
    return out


def _expected(page: str) -> dict:
    """What the page's notebook holds: figures, tables, widget views and state."""
    nb_path = ROOT / f"{page}.ipynb"
    want = {"figures": 0, "tables": 0, "views": 0, "state": {}, "diagrams": 0}
    if not nb_path.exists():  # a Markdown page
        want["tables"] = len(TABLE_RULE.findall((ROOT / f"{page}.md").read_text()))
        return want
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            want["tables"] += len(TABLE_RULE.findall(src))
        if cell["cell_type"] == "code":
            want["diagrams"] += src.count("show_diagram(")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            want["figures"] += any(t in data for t in FIGURE_TYPES)
            want["views"] += WIDGET_VIEW in data
            md = "".join(data.get("text/markdown", ""))
            html = "".join(data.get("text/html", ""))
            want["tables"] += len(TABLE_RULE.findall(md)) + html.count("<table")
    want["state"] = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return want


def _has_slider(state: dict) -> bool:
    return any(m["state"].get("_model_name", "").endswith("SliderModel") for m in state.values())


def _render(exe: str, html: Path, page: str, shots: Path, profile: Path) -> dict:
    """Open one page: its DOM after the scripts ran, and a screenshot; on a page with a
    slider, also a copy that moves the first slider one step (see MOVE_SCRIPT)."""
    name = page.replace("/", "_")
    shot = shots / f"{name}.png"
    shot.unlink(missing_ok=True)
    source = html / f"{page}.html"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile / name}", f"--screenshot={shot}",
           "--dump-dom", source.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = {"page": page, "rc": r.returncode, "dom": r.stdout, "stderr": r.stderr[-2000:],
           "shot": shot, "raw": source.read_text(), "move": None}
    # a copy with TABLES_SCRIPT: where each table ends against the article's column
    copy = profile / f"{name}-tables.html"
    copy.write_text(out["raw"].replace("<head>", f'<head><base href="{source.as_uri()}">', 1)
                    .replace("</body>", TABLES_SCRIPT + "</body>", 1))
    t = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile / name}-tables",
                        "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<body[^>]*\bdata-tables="([^"]*)"', t.stdout)
    out["tables"] = json.loads(html_lib.unescape(found.group(1))) if found else {
        "error": f"no result (rc {t.returncode}): {t.stderr[-500:]}"}
    found = re.search(r'<body[^>]*\bdata-math="([^"]*)"', t.stdout)
    out["math"] = json.loads(html_lib.unescape(found.group(1))) if found else None
    if _has_slider(_expected(page)["state"]):
        # the copy lives outside the book; <base> points its relative links back into it
        copy = profile / f"{name}-move.html"
        copy.write_text(out["raw"].replace("<head>", f'<head><base href="{source.as_uri()}">', 1)
                        .replace("</body>", MOVE_SCRIPT + "</body>", 1))
        m = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile / name}-move",
                            "--dump-dom", copy.as_uri()], capture_output=True, text=True,
                           timeout=120)
        found = re.search(r'<body[^>]*\bdata-move="([^"]*)"', m.stdout)
        out["move"] = json.loads(html_lib.unescape(found.group(1))) if found else {
            "error": f"no result (rc {m.returncode}): {m.stderr[-500:]}"}
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    exe = _chromium()
    html = _html_dir()
    shots = html.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: _render(exe, html, p, shots, profile), _pages()))
    return html, {r["page"]: r for r in results}


def test_the_book_has_every_chapter(rendered):
    html, pages = rendered
    assert set(_pages()) == set(pages)
    assert "book/06_benchmark" in pages and len(pages) >= 8
    # and the build wrote no error reports (a notebook that failed, a cell that raised)
    reports = html / "reports"
    assert not reports.exists() or not any(reports.rglob("*")), sorted(reports.rglob("*"))


def test_no_script_or_stylesheet_comes_from_the_network():
    html = _html_dir()
    remote = re.compile(r"<(?:script[^>]*\ssrc|link[^>]*\shref)=[\"'](?:https?:)?//", re.I)
    bad = {str(p.relative_to(html)): remote.findall(p.read_text())
           for p in html.rglob("*.html") if remote.search(p.read_text())}
    assert bad == {}
    # MathJax and the widget manager are served from the book itself
    assert (html / "_static" / "mathjax" / "es5" / "tex-chtml.js").exists()
    assert (html / "_static" / "widgets" / "embed-amd.js").exists()
    assert (html / "_static" / "widgets" / "require.js").exists()


@pytest.mark.parametrize("page", _pages())
def test_page_renders_with_its_figures_tables_and_widgets(rendered, page):
    from PIL import Image

    html, pages = rendered
    r = pages[page]
    assert r["rc"] == 0, r["stderr"]
    dom, raw, want = r["dom"], r["raw"], _expected(page)
    assert "<article" in dom and "</html>" in dom

    # the screenshot exists and is not a blank page
    with Image.open(r["shot"]) as im:
        assert im.size == (1280, 2400)
        lo_hi = im.convert("L").getextrema()
    assert lo_hi[1] - lo_hi[0] > 100, f"blank screenshot {r['shot']}"

    # figures: as many images as the notebook has figure outputs, each with its data or file
    imgs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", dom)
    for src in imgs:
        if src.startswith("data:image/"):
            continue
        assert not re.match(r"(https?:)?//", src), f"{page}: remote image {src}"
        target = (html / page).parent / src.split("#")[0].split("?")[0]
        assert target.exists(), f"{page}: image {src} has no file"
    assert len(imgs) >= want["figures"], (page, len(imgs), want["figures"])

    # diagrams: every show_diagram cell's SVG output is on the page (checked above as a file)
    drawn = [s for s in imgs if s.split("?")[0].endswith(".svg") or s.startswith("data:image/svg")]
    assert len(drawn) >= want["diagrams"], (page, len(drawn), want["diagrams"])

    # no display equation runs past the article's column (MathJax typesets on the page)
    assert r["math"] is not None, f"{page}: the equations were not measured"
    assert r["math"] == [], f"{page}: equations wider than the column: {r['math']}"

    # no figure is wider than the article's column (it would be shrunk and unreadable)
    assert r["tables"].get("wide_figures") == [], f"{page}: figures wider than the column: " \
        f"{r['tables'].get('wide_figures')}"

    # tables: every Markdown table of the notebook (cells and outputs) became an HTML table
    assert dom.count("<table") >= want["tables"], (page, dom.count("<table"), want["tables"])

    # no table is wider than the article's column unless it scrolls sideways inside it
    tables = r["tables"]
    assert "error" not in tables, f"{page}: {tables}"
    assert tables["count"] == dom.count("<table"), (page, tables["count"])
    assert tables["bad"] == [], f"{page}: tables overflow the page: {tables['bad']}"

    # widgets: the saved state is in the page, and the book's JavaScript rendered each view
    views = raw.count(f'type="{WIDGET_VIEW}"')
    assert views == want["views"], (page, views, want["views"])
    if want["state"]:
        assert f'type="{WIDGET_STATE}"' in raw, f"{page}: widget state missing"
        assert "_static/widgets/embed-amd.js" in raw
        assert dom.count('class="widget-subarea"') == views, f"{page}: widget views not rendered"
        if _has_slider(want["state"]):
            assert "widget-slider" in dom, f"{page}: no slider in the rendered DOM"
            # the slider moves in the static page, and the panel linked to it follows
            move = r["move"]
            assert "error" not in move, f"{page}: {move}"
            assert move["after"]["readout"] != move["before"]["readout"], move
            assert move["after"]["panel"] != move["before"]["panel"], move
    else:
        assert views == 0
