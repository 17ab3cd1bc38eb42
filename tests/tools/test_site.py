"""The website as readers see it (issue 11).

Unit tests of :mod:`skiplib.tools.site` (link check, asset pinning) run everywhere. The browser
tests need a built site: ``make site-test`` (after ``make book``) sets ``SKIPLIB_SITE_HTML``
to ``_build/html``, serves it on 127.0.0.1 and opens every page in headless Chromium driven
by Playwright, with every request that leaves localhost refused, so the site is checked as
it works without internet. Screenshots (light and dark) go to ``SKIPLIB_SITE_SHOTS``
(default ``_build/site-test``) for people to look at.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from skiplib.tools import site

from _paths import ROOT

HTML = os.environ.get("SKIPLIB_SITE_HTML")
PAGES = [p.relative_to(Path(HTML).resolve()).as_posix() for p in site.site_pages(HTML)] if HTML else []


# ------------------------------------------------------------------------------------------
# skiplib.tools.site without a browser


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def test_check_links_accepts_a_consistent_site(tmp_path):
    _page(tmp_path / "index.html", '<a href="book/a.html#part">a</a> <a href="https://example.org/x">ext</a>')
    _page(tmp_path / "book/a.html", '<h1 id="part">A</h1><img src="../_images/f.png"><a href="#part">top</a>')
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images/f.png").write_bytes(b"png")
    assert site.check_links(tmp_path) == []


def test_check_links_reports_missing_files_and_anchors(tmp_path):
    _page(tmp_path / "index.html", '<a href="book/a.html#nowhere">a</a><img src="gone.png">')
    _page(tmp_path / "book/a.html", '<h1 id="part">A</h1><a href="../../outside.html">x</a>')
    problems = site.check_links(tmp_path)
    assert any("no id 'nowhere'" in p and p.startswith("index.html") for p in problems), problems
    assert any("no file gone.png" in p for p in problems), problems
    assert any("outside the site" in p for p in problems), problems
    assert len(problems) == 3


def test_check_links_without_pages_says_to_build(tmp_path):
    with pytest.raises(ValueError, match="make book"):
        site.check_links(tmp_path)


def test_theme_templates_are_not_pages(tmp_path):
    _page(tmp_path / "index.html", "")
    _page(tmp_path / "_static/webpack-macros.html", "{{ pathto('x') }}")
    assert [p.name for p in site.site_pages(tmp_path)] == ["index.html"]


def test_assets_are_pinned_and_config_names_the_extension():
    for asset in site.ASSETS:
        assert re.fullmatch(r"\d+\.\d+\.\d+", asset.version), asset
        assert len(asset.sha512) == 88 and asset.sha512.endswith("=="), asset
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "skiplib.tools.site" in config["sphinx"]["extra_extensions"]


def test_vendor_unpacks_a_verified_tarball_and_rejects_a_tampered_one(tmp_path, monkeypatch):
    src = tmp_path / "pkg" / "package" / "dist"
    src.mkdir(parents=True)
    (src / "embed.js").write_text("// js")
    cache = tmp_path / "cache"
    cache.mkdir()
    tgz = cache / "fake-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(tmp_path / "pkg" / "package", arcname="package")
    good = site.Asset("fake", "1.0.0", site._sha512(tgz), "package/dist", "vendor/fake")
    monkeypatch.setattr(site, "ASSETS", (good,))
    site.vendor(tmp_path / "out", cache)
    assert (tmp_path / "out/vendor/fake/embed.js").read_text() == "// js"

    shutil.rmtree(tmp_path / "out")
    bad = site.Asset("fake", "1.0.0", "A" * 86 + "==", "package/dist", "vendor/fake")
    monkeypatch.setattr(site, "ASSETS", (bad,))
    with pytest.raises(RuntimeError, match="sha512 differs"):
        site.vendor(tmp_path / "out", cache)
    assert not tgz.exists(), "a tarball that fails its digest must not stay in the cache"


def test_asset_mode_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv(site.ASSETS_ENV, "offline")
    with pytest.raises(ValueError, match="vendor, cdn"):
        site.asset_mode()


# ------------------------------------------------------------------------------------------
# The built site in a browser

needs_site = pytest.mark.skipif(not HTML, reason="needs a built site: run `make site-test` after `make book`")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def base_url():
    handler = functools.partial(_QuietHandler, directory=str(Path(HTML).resolve()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    exe = os.environ.get("SKIPLIB_CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
    if exe is None and not HTML:  # the unit-level checks below: skipped where no browser is installed
        pytest.skip("no Chromium: the browser checks run in make site-test")
    if exe is None:
        pytest.fail("no Chromium found: `make site-test` installs Debian's chromium with apt-get; "
                    "elsewhere set SKIPLIB_CHROMIUM to a Chromium or Chrome executable")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("SKIPLIB_SITE_SHOTS", Path(HTML or ".").resolve().parent / "site-test"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, base_url: str, path: str, *, dark: bool = False):
    """A page loaded with the network limited to the local server, and what went wrong."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark" if dark else "light")
    report = {"console": [], "external": []}

    def route(r):
        if r.request.url.startswith(base_url):
            r.continue_()
        else:
            report["external"].append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    # the console says only "404" for a missing file: name the file
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and report["console"].append(m.text))
    page.on("response", lambda r: r.status >= 400 and report["console"].append(f"HTTP {r.status}: {r.url}"))
    page.on("pageerror", lambda e: report["console"].append(f"uncaught: {e}"))
    page.goto(base_url + path, wait_until="load")
    page.wait_for_load_state("networkidle")  # index.html redirects to the first page
    # lazy images load only near the viewport: scroll through the page once
    page.evaluate("""async () => {
        for (let y = 0; y < document.body.scrollHeight; y += 700) { window.scrollTo(0, y);
            await new Promise(r => setTimeout(r, 30)); }
        window.scrollTo(0, 0); }""")
    page.wait_for_load_state("networkidle")
    if page.locator(".math").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
        page.evaluate("() => MathJax.startup.promise")
    return context, page, report


# ------------------------------------------------------------------------------------------
# What a reader sees (issue 20): each check takes a loaded page and returns one line per defect,
# and is shown failing on a small hand-made page below, so a pass on the built site means something.

# Taller than this (px) with nothing drawn in it: a few lines of text are ~100 px.
BLANK_PX = 120
# The content column of a chapter (pydata-sphinx-theme); hand-made pages use a bare <article>.
ARTICLE = "article.bd-article, article"


def blank_regions(page, min_px: int = BLANK_PX) -> list[str]:
    """Vertical stretches of the content column taller than ``min_px`` where nothing is drawn.

    Robust to whatever leaves the space (a hidden widget, a placeholder's min-height, empty
    margins): it collects the boxes of everything visible in the column (text line by line,
    images, SVG, canvases, form controls, rules, boxes with a background or border) and reports
    each gap between them, and between them and the column's ends, taller than ``min_px``."""
    return page.evaluate(r"""([sel, minPx]) => {
        const art = document.querySelector(sel); if (!art) return [];
        const shown = el => { for (let e = el; e && e !== art.parentElement; e = e.parentElement) {
            const s = getComputedStyle(e);
            if (s.visibility === 'hidden' || s.display === 'none' || +s.opacity === 0) return false; } return true; };
        const spans = [], add = r => { if (r.width > 0 && r.height > 0) spans.push([r.top + scrollY, r.bottom + scrollY]); };
        const walker = document.createTreeWalker(art, NodeFilter.SHOW_TEXT);
        for (let t = walker.nextNode(); t; t = walker.nextNode()) {
            if (!t.textContent.trim() || !shown(t.parentElement)) continue;
            const range = document.createRange(); range.selectNodeContents(t);
            for (const r of range.getClientRects()) add(r);
        }
        for (const el of art.querySelectorAll('*')) {
            const s = getComputedStyle(el);
            const drawn = /^(IMG|SVG|CANVAS|VIDEO|IFRAME|INPUT|SELECT|TEXTAREA|BUTTON|HR|MJX-CONTAINER|PROGRESS)$/i;
            const painted = drawn.test(el.tagName)
                || (s.backgroundColor !== 'rgba(0, 0, 0, 0)' && s.backgroundColor !== 'transparent')
                || s.backgroundImage !== 'none' || parseFloat(s.borderTopWidth) > 0 || parseFloat(s.borderLeftWidth) > 0;
            if (painted && shown(el)) add(el.getBoundingClientRect());
        }
        const box = art.getBoundingClientRect(), cs = getComputedStyle(art);
        const top = box.top + scrollY + parseFloat(cs.paddingTop), bottom = box.bottom + scrollY - parseFloat(cs.paddingBottom);
        spans.sort((a, b) => a[0] - b[0]);
        const gaps = []; let reached = top;
        for (const [a, b] of [...spans, [bottom, bottom]]) {
            if (a - reached > minPx) gaps.push([reached, a]);
            reached = Math.max(reached, b);
        }
        const where = ([a, b]) => {  // the innermost element holding the whole gap, and the text above it
            let best = art;
            for (const el of art.querySelectorAll('*')) { const r = el.getBoundingClientRect();
                if (r.top + scrollY <= a + 1 && r.bottom + scrollY >= b - 1 && r.height < best.getBoundingClientRect().height)
                    best = el; }
            const name = best.tagName.toLowerCase() + (best.className && typeof best.className === 'string'
                ? '.' + best.className.trim().split(/\s+/).join('.') : '');
            return `${Math.round(b - a)} px blank at y=${Math.round(a)}..${Math.round(b)} in <${name}>`;
        };
        return gaps.map(where);
    }""", [ARTICLE, min_px])


def hidden_widgets(page) -> list[str]:
    """Widgets drawn invisible but still taking room: tqdm's finished per-epoch bars (leave=False) set
    ``visibility: hidden``. A handful stays under ``BLANK_PX`` in the smoke profile, tens of them (the
    cpu profile's epochs) made the blank stretches of issue 20, so this is checked on its own."""
    return page.evaluate(r"""(sel) => { const art = document.querySelector(sel); if (!art) return [];
        const hidden = Array.from(art.querySelectorAll('.jupyter-widgets'))
            .filter(w => getComputedStyle(w).visibility === 'hidden' && w.getBoundingClientRect().height > 0)
            .filter(w => !w.parentElement.closest('.jupyter-widgets'));  // count a bar once, not its parts
        if (!hidden.length) return [];
        const px = hidden.reduce((sum, w) => sum + w.getBoundingClientRect().height, 0);
        return [`${hidden.length} hidden widget(s) (finished progress bars?) take ${Math.round(px)} px: `
                + hidden[0].textContent.trim().slice(0, 60)]; }""", ARTICLE)


def scrolled_code(page) -> list[str]:
    """Code blocks wider than the column, which the reader has to scroll sideways: each with its longest
    line and how many characters the column holds. Cell outputs count too (the site wraps their lines,
    as Jupyter does); the source of a cell collapsed behind "Show code cell source" counts once opened."""
    return page.evaluate(r"""(sel) => Array.from(document.querySelectorAll(sel))
        .filter(p => !p.closest('details:not([open])'))
        .filter(p => p.scrollWidth > p.clientWidth + 1 && p.clientWidth > 0)
        .map(p => { const lines = p.textContent.split('\n');
            const longest = lines.reduce((a, b) => b.length > a.length ? b : a, '');
            const probe = document.createElement('span'); probe.textContent = 'x'.repeat(100); p.appendChild(probe);
            const s = getComputedStyle(p), inner = p.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
            const fit = Math.floor(inner / (probe.getBoundingClientRect().width / 100)); probe.remove();
            return `code block scrolls (${longest.length} characters, ${fit} fit): ${longest.trim().slice(0, 80)}`; })
    """, ", ".join(f"{a} {c}" for a in ARTICLE.split(", ") for c in (".cell_input pre", "div.highlight pre")))


def uncaptioned_figures(page) -> list[str]:
    """Images a cell drew that are not a numbered figure (a ``figure`` whose ``figcaption`` says "Fig. N").

    Images inside a live widget (an ipywidgets Output's saved plot) are exploration, not figures."""
    return page.evaluate(r"""(sel) => { const art = document.querySelector(sel); if (!art) return [];
        return Array.from(art.querySelectorAll('.cell_output img, div.output img'))
            .filter(img => !img.closest('.jupyter-widgets, .widget-subarea'))
            .filter(img => { const fig = img.closest('figure'), cap = fig && fig.querySelector('figcaption');
                return !cap || !/Fig\.\s*\d+/.test(cap.textContent); })
            .map(img => { const cell = img.closest('.cell'), code = cell && cell.querySelector('.cell_input pre');
                const first = code ? code.textContent.trim().split('\n')[0].slice(0, 80) : '';
                return `figure without a numbered caption: ${img.getAttribute('src').slice(0, 60)}`
                    + (first ? ` (cell: ${first})` : ''); }); }""", ARTICLE)


@pytest.fixture
def sketch(browser):
    """Load a small hand-made page (no server: ``set_content``) and return the Playwright page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    style = "<style>body{margin:0;font:16px/1.5 sans-serif} article{width:700px;padding:8px}"\
            " pre{overflow-x:auto;font:14px/1.4 monospace;margin:4px 0}</style>"

    def load(body: str):
        page = context.new_page()
        page.set_content(f"<html><head>{style}</head><body><article class='bd-article'>{body}</article></body></html>")
        return page

    yield load
    context.close()


PARAGRAPH = "<p>Some prose of the chapter, a line or two long.</p>"
# a 40x30 opaque PNG drawn by the page itself (no file, no network)
PNG = """<canvas id=c width=40 height=30></canvas><script>const c = document.getElementById('c');
c.getContext('2d').fillRect(0, 0, 40, 30); document.currentScript.insertAdjacentHTML('afterend',
`<img src="${c.toDataURL()}" width=400 height=300>`); c.remove();</script>"""


@pytest.mark.site
@pytest.mark.parametrize("gap", [
    "<div class='cell_output'><div class='output'><div style='height:300px'></div></div></div>",  # a placeholder
    # tqdm's closed bar (leave=False): its text is still there, but layout.visibility hides it
    "<div class='cell_output'><div style='visibility:hidden;height:40px'>fit 1/1 100%</div>" * 6 + "</div>",
    PARAGRAPH.replace("<p>", "<p style='margin-bottom:200px'>"),  # or a margin
])
def test_blank_region_check_finds_empty_space(sketch, gap):
    page = sketch(PARAGRAPH + gap + PARAGRAPH)
    found = blank_regions(page)
    assert len(found) == 1 and "px blank" in found[0], found


@pytest.mark.site
@pytest.mark.parametrize("content", [
    "<div class='cell_output'><pre>" + "\n".join(f"line {i}" for i in range(20)) + "</pre></div>",  # tall text
    "<div class='cell_output'>" + PNG + "</div>",  # a tall image
    "<div class='cell_output'><div style='height:300px;background:#eee'></div></div>",  # a painted box
    "<div class='cell_output'><div style='visibility:hidden;height:300px;display:none'>bar</div></div>",  # collapsed
])
def test_blank_region_check_passes_drawn_content(sketch, content):
    assert blank_regions(sketch(PARAGRAPH + content + PARAGRAPH)) == []


@pytest.mark.site
def test_hidden_widget_check_finds_finished_bars_that_take_room(sketch):
    bar = ("<div class='cell_output'><div class='widget-subarea'><div class='jupyter-widgets widget-hbox' "
           "style='visibility: hidden; height: 30px'><div class='jupyter-widgets'>fit 1/4 100%</div></div></div></div>")
    found = hidden_widgets(sketch(PARAGRAPH + bar * 2 + PARAGRAPH))
    assert len(found) == 1 and found[0].startswith("2 hidden widget(s)") and "60 px" in found[0], found
    # the site's stylesheet (book/_static/skiplib.css) collapses them: the same bars, as it leaves them
    collapsed = bar.replace("style='", "style='display: none; ")
    assert hidden_widgets(sketch(PARAGRAPH + collapsed * 2 + PARAGRAPH)) == []
    assert hidden_widgets(sketch(PARAGRAPH + bar.replace("visibility: hidden; ", "") + PARAGRAPH)) == []


def test_site_stylesheet_collapses_hidden_widgets_and_wraps_outputs():
    """The rules the checks above rely on, and _config.yml serving them (a renamed file would drop them)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert config["html_css_files"] == ["skiplib.css"]
    css = (ROOT / config["html_static_path"][0] / "skiplib.css").read_text()
    assert re.search(r'\.jupyter-widgets\[style\*="visibility: hidden"\]\s*\{\s*display: none', css), css
    assert re.search(r"\.cell_output pre\s*\{\s*white-space: pre-wrap", css), css


@pytest.mark.site
def test_scrolled_code_check_finds_a_line_past_the_column(sketch):
    long = "result = train(model, loader, " + ", ".join(f"option_{i}=True" for i in range(12)) + ")"
    page = sketch(f"<div class='cell_input'><div class='highlight'><pre>x = 1\n{long}</pre></div></div>")
    found = scrolled_code(page)
    assert len(found) == 1 and "result = train(model" in found[0] and f"{len(long)} characters" in found[0], found
    # a 700 px wide pre at 14 px monospace (about 8.4 px a character) holds about 83 characters
    assert 78 <= int(re.search(r"(\d+) fit", found[0]).group(1)) <= 88, found
    wrapped = ",\n    ".join(long.split(", "))  # one argument a line
    assert scrolled_code(sketch(f"<div class='cell_input'><div class='highlight'><pre>{wrapped}</pre></div></div>")) == []
    closed = f"<details><summary>Show code cell source</summary><div class='cell_input'><pre>{long}</pre></div></details>"
    assert scrolled_code(sketch(closed)) == [], "a collapsed cell is not on screen"
    assert len(scrolled_code(sketch(closed.replace("<details>", "<details open>")))) == 1


@pytest.mark.site
def test_uncaptioned_figure_check_wants_a_numbered_figcaption(sketch):
    cell = "<div class='cell'><div class='cell_input'><pre>plt.show()</pre></div><div class='cell_output'>{}</div></div>"
    bare = sketch(cell.format(PNG))
    found = uncaptioned_figures(bare)
    assert len(found) == 1 and "(cell: plt.show())" in found[0], found
    unnumbered = "<figure><div class='cell_output'>{}</div><figcaption><p>A caption</p></figcaption></figure>"
    assert len(uncaptioned_figures(sketch(unnumbered.format(PNG)))) == 1
    numbered = ("<figure id='fig-x'><div class='cell_output'>{}</div><figcaption><p><span class='caption-number'>"
                "Fig. 3 </span><span class='caption-text'>Training error.</span></p></figcaption></figure>")
    assert uncaptioned_figures(sketch(numbered.format(PNG))) == []
    widget = "<div class='cell_output'><div class='widget-subarea'><div class='jupyter-widgets'>{}</div></div></div>"
    assert uncaptioned_figures(sketch(widget.format(PNG))) == [], "a live widget's plot is not a figure"
    assert uncaptioned_figures(sketch(PARAGRAPH + PNG)) == [], "only images that a cell drew are checked"


def _chapter_notebook(path: str) -> str | None:
    """``book/01_degradation.ipynb`` for a chapter page built from a notebook, else None."""
    source = Path(HTML).resolve() / "_sources" / Path(path).with_suffix(".ipynb")
    md_twin = source.with_suffix(".md")
    return Path(path).with_suffix(".ipynb").as_posix() if source.exists() and not md_twin.exists() else None


@needs_site
@pytest.mark.site
@pytest.mark.parametrize("path", PAGES)
def test_page_renders_offline(browser, base_url, shots, path):
    context, page, report = _open(browser, base_url, path)
    try:
        name = path.replace("/", "_").removesuffix(".html")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        problems = [f"console error: {m}" for m in report["console"]]
        problems += [f"request to the internet (refused): {u}" for u in report["external"]]
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.getAttribute('src'))")
        problems += [f"image did not load: {src}" for src in broken]
        math, typeset = page.locator(".math").count(), page.locator("mjx-container").count()
        if math and typeset < math:
            problems.append(f"{math - typeset} of {math} formulas are not typeset by MathJax")
        if page.locator("mjx-merror").count():
            problems.append("MathJax reports a TeX error")
        text = page.evaluate("""() => { const a = document.querySelector('article'); if (!a) return '';
            const c = a.cloneNode(true); c.querySelectorAll('pre, code').forEach(e => e.remove());
            return c.textContent; }""")  # prose only: code may build tables as strings
        if re.search(r"\|\s*(-{3,}|[\u2013\u2014]+)\s*\|", text):  # smartquotes turns --- into an em dash
            problems.append("a Markdown table was shown as text (a table glued with the inline {glue:md} role?)")
        views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        widgets = page.locator(".widget-subarea > .jupyter-widgets")
        if views and widgets.count() == 0:
            problems.append(f"{views} widget view(s) in the page, none rendered")
        elif views:  # a picture of the largest rendered widget (an empty Output widget has no size)
            areas = widgets.evaluate_all("ws => ws.map(w => w.offsetWidth * w.offsetHeight)")
            widgets.nth(areas.index(max(areas))).screenshot(path=str(shots / f"{name}-widget.png"), timeout=10_000)
        notebook = _chapter_notebook(path)
        if notebook:
            colab = page.locator("a[href*='colab.research.google.com']").evaluate_all("as => as.map(a => a.href)")
            if not any(href.endswith(f"/blob/main/{notebook}") for href in colab):
                problems.append(f"no Open-in-Colab link to {notebook} (found {colab})")
            if page.locator(f"a[href$='_sources/{notebook}']").count() == 0:
                problems.append(f"no download link for {notebook}")
            exercises, solutions = page.locator("div.exercise").count(), page.locator("div.solution")
            if exercises < 3:
                problems.append(f"{exercises} exercises, a chapter has at least 3")
            for i in range(solutions.count()):
                body = solutions.nth(i).locator("section, .admonition-title ~ *").first
                if body.count() and body.is_visible():
                    problems.append(f"solution {i + 1} is open; solutions start collapsed")
            if page.locator("img").count() and page.locator("span.caption-number").count() == 0:
                problems.append("figures are not numbered")
            problems += uncaptioned_figures(page)
        problems += blank_regions(page)
        problems += hidden_widgets(page)
        problems += scrolled_code(page)
        assert not problems, f"{path}:\n" + "\n".join(problems)
    finally:
        context.close()


@needs_site
@pytest.mark.site
def test_search_finds_residual(browser, base_url, shots):
    context, page, report = _open(browser, base_url, "search.html?q=residual")
    try:
        page.wait_for_selector("#search-results li", timeout=20_000)
        hits = page.locator("#search-results li").count()
        page.screenshot(path=str(shots / "search_residual.png"))
        assert hits > 0, "searching for 'residual' found nothing"
        assert not report["console"], report["console"]
    finally:
        context.close()


@needs_site
@pytest.mark.site
@pytest.mark.parametrize("path", [p for p in PAGES if p.startswith("book/")])
def test_figures_stay_legible_in_dark_mode(browser, base_url, shots, path):
    """A figure with a transparent background would put black axes on the dark theme's
    background: every content image must be opaque at its corners."""
    context, page, _ = _open(browser, base_url, path, dark=True)
    try:
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        page.screenshot(path=str(shots / f"{path.replace('/', '_').removesuffix('.html')}-dark.png"), full_page=True)
        see_through = page.evaluate("""() => Array.from(document.querySelectorAll('.bd-article img'))
            .filter(i => i.naturalWidth > 0 && !i.src.endsWith('.svg')).filter(i => {
                const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
                const g = c.getContext('2d'); g.drawImage(i, 0, 0);
                const w = i.naturalWidth - 1, h = i.naturalHeight - 1;
                return [[0, 0], [w, 0], [0, h], [w, h]].some(([x, y]) => g.getImageData(x, y, 1, 1).data[3] < 255);
            }).map(i => i.getAttribute('src'))""")
        assert not see_through, f"{path}: transparent figures, illegible on a dark background: {see_through}"
    finally:
        context.close()


@needs_site
@pytest.mark.site
def test_internal_links_resolve():
    assert PAGES, f"SKIPLIB_SITE_HTML={HTML} has no pages"
    problems = site.check_links(HTML)
    assert problems == [], "\n".join(problems)


def test_publishing_workflow_runs_the_readme_commands():
    """The GitHub Pages workflow builds the site the way the README and .ci/run do."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["build"]["steps"]]
    for command in ("make test", "make book", "make site-test"):
        assert any(command in run for run in runs), f"the workflow does not run `{command}`"
        assert command in (ROOT / "README.md").read_text(), f"README does not mention `{command}`"
        assert command in (ROOT / ".ci/run").read_text(), f".ci/run does not run `{command}`"
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
