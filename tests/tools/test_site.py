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
