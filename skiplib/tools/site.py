"""The website's own plumbing: offline JavaScript assets and an offline link check.

Not part of the course material; the book build and ``make site-test`` use it.

* **Offline assets.** By default a Jupyter Book page loads MathJax, require.js and the
  ipywidgets HTML manager from public CDNs, so without internet (a classroom intranet, a
  laptop on a train) its maths is raw TeX and its widgets are blank. Used as a Sphinx
  extension (``_config.yml`` lists ``skiplib.tools.site``), this module fetches those packages at
  build time with ``npm pack`` (pinned versions, checked against pinned sha512 digests),
  unpacks them under ``_build/site-assets`` (never committed) and points the pages at the
  copies in ``_static/offline``. With ``SKIPLIB_SITE_ASSETS=cdn``, or when ``npm`` is missing
  or the registry cannot be reached, the build keeps the CDN links and says so.
* **Link check.** :func:`check_links` resolves every relative ``href``/``src`` of a built
  site, anchors included, without touching the network (``python -m skiplib.tools.site links``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ASSETS_ENV = "SKIPLIB_SITE_ASSETS"
ASSET_MODES = ("vendor", "cdn")


@dataclass(frozen=True)
class Asset:
    """One npm package: the folder of it the site needs, and where it goes under ``_static``."""

    package: str
    version: str
    sha512: str  # base64, as npm prints it ("integrity: sha512-…")
    member: str  # folder inside the tarball (which starts with "package/")
    target: str  # folder under _static

    @property
    def tarball(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


ASSETS = (
    Asset("mathjax", "3.2.2",
          "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
          "package/es5", "offline/mathjax"),
    Asset("requirejs", "2.3.8",
          "7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
          "package", "offline/requirejs"),
    Asset("@jupyter-widgets/html-manager", "1.0.11",
          "MC0bD2uhaMjq+Wf64jXtydqCUNrNdElldMH19QAujAAiag0aGYA41s9PMPVEuVH1+RpqI7MQUqWkaAIbx4xMQQ==",
          "package/dist", "offline/html-manager"),
)
# Paths relative to _static, as Sphinx's mathjax_path and myst-nb's nb_ipywidgets_js take them.
MATHJAX_PATH = "offline/mathjax/tex-mml-chtml.js"
IPYWIDGETS_JS = {"offline/requirejs/require.js": {}, "offline/widgets-path.js": {},
                 "offline/html-manager/embed-amd.js": {}}
# The widget manager is a set of AMD modules named "@jupyter-widgets/html-manager/dist/…"; by
# default require.js looks for them, and the manager for its icon fonts, relative to the page.
# Map that name onto the unpacked dist/ folder (runs after require.js, before the manager).
WIDGETS_PATH_JS = """// written by skiplib.tools.site: where the offline ipywidgets manager and its fonts are
(function () {
  var dist = new URL("html-manager/", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = dist;
  require.config({paths: {"@jupyter-widgets/html-manager/dist": dist.replace(/\\/$/, "")}});
})();
"""


def _sha512(path: Path) -> str:
    return base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _fetch(asset: Asset, cache: Path) -> Path:
    """The package tarball from ``cache``, fetched with ``npm pack`` first if needed."""
    tgz = cache / asset.tarball
    if not tgz.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (apt-get install npm, or set SKIPLIB_SITE_ASSETS=cdn)")
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "pack", f"{asset.package}@{asset.version}", "--pack-destination", str(cache),
                               "--silent"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not tgz.exists():
            raise RuntimeError(f"npm pack {asset.package}@{asset.version} failed: {proc.stderr.strip()[-400:]}")
    if _sha512(tgz) != asset.sha512:
        tgz.unlink()
        raise RuntimeError(f"{tgz.name}: sha512 differs from the pinned digest; the file was removed, "
                           "run the build again to fetch it anew")
    return tgz


def vendor(dest: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """Unpack every :data:`ASSETS` package into ``dest/<target>`` (skipped when already there).

    Returns ``dest``, a folder to add to Sphinx's ``html_static_path``. Raises RuntimeError
    saying what failed (no npm, registry unreachable, digest mismatch)."""
    dest = Path(dest)
    cache = Path(cache) if cache is not None else dest / ".npm-packs"
    for asset in ASSETS:
        out = dest / asset.target
        stamp = out / ".version"
        if stamp.exists() and stamp.read_text() == asset.version:
            continue
        tgz = _fetch(asset, cache)
        shutil.rmtree(out, ignore_errors=True)
        prefix = asset.member.rstrip("/") + "/"
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                if not m.isfile() or not m.name.startswith(prefix):
                    continue
                rel = Path(m.name[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise RuntimeError(f"{tgz.name}: refusing to unpack {m.name!r} outside its folder")
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        stamp.write_text(asset.version)
    (dest / "offline").mkdir(parents=True, exist_ok=True)
    (dest / "offline" / "widgets-path.js").write_text(WIDGETS_PATH_JS)
    return dest


def asset_mode() -> str:
    """``vendor`` (default) or ``cdn``, from ``$SKIPLIB_SITE_ASSETS``."""
    mode = os.environ.get(ASSETS_ENV, "vendor").strip().lower() or "vendor"
    if mode not in ASSET_MODES:
        raise ValueError(f"{ASSETS_ENV}={mode!r}: allowed values are {', '.join(ASSET_MODES)}")
    return mode


def _config_inited(app, config) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    if asset_mode() == "cdn":
        log.info(f"[skiplib.tools.site] {ASSETS_ENV}=cdn: MathJax and widgets load from their CDNs")
        return
    dest = Path(app.outdir).parent / "site-assets"
    try:
        vendor(dest)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        # Not a warning: -W would turn it into a failed build on a machine without npm.
        log.info(f"[skiplib.tools.site] offline assets unavailable ({e}); the pages load them from CDNs")
        return
    config.html_static_path = [*config.html_static_path, str(dest.resolve())]
    config.mathjax_path = MATHJAX_PATH
    config.nb_ipywidgets_js = dict(IPYWIDGETS_JS)
    log.info(f"[skiplib.tools.site] MathJax, require.js and the widget manager are served from {dest}")


def _theme_defaults(app, config) -> None:
    # pydata-sphinx-theme writes `dataset.mode = localStorage.mode || "<default_mode>"` and logs
    # a console error for the empty string a first-time visitor gets unless this is set.
    config.html_context = {**config.html_context, "default_mode": config.html_context.get("default_mode", "auto")}


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    # sphinx-thebe registers its inline configuration once per read phase, and Jupyter Book
    # reaches that phase twice: the second copy re-declares a `const` and throws in the browser.
    scripts, seen = [], set()
    for js in context.get("script_files", []):
        # an inline script has filename None or "" depending on who added it
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(js)
    context["script_files"][:] = scripts


def setup(app) -> dict:
    """Sphinx entry point (``sphinx: extra_extensions: [skiplib.tools.site]`` in ``_config.yml``)."""
    app.connect("config-inited", _config_inited, priority=100)
    app.connect("config-inited", _theme_defaults)
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name") and (name == "id" or tag == "a"):
                self.ids.add(value)
            elif name in ("href", "src") and not (tag == "link" and ("rel", "canonical") in attrs):
                self.refs.append((name, value))


def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def site_pages(html_dir: str | os.PathLike) -> list[Path]:
    """The reader-facing pages of a built site (not the theme's templates under ``_static``)."""
    root = Path(html_dir).resolve()
    return sorted(p for p in root.rglob("*.html") if p.relative_to(root).parts[0] not in ("_static", "_sources"))


def check_links(html_dir: str | os.PathLike) -> list[str]:
    """Every broken relative link of the site in ``html_dir``: a missing file, or an ``#anchor``
    that the target page does not define. External links are not fetched. Returns one line per
    problem ("page: link (why)"); an empty list means every internal link resolves."""
    root = Path(html_dir).resolve()
    pages = site_pages(root)
    if not pages:
        raise ValueError(f"no HTML pages under {root}: build the book first (make book)")
    parsed = {p: _parse(p) for p in pages}
    problems = []
    for page, refs in parsed.items():
        for _attr, value in refs.refs:
            url = urlsplit(value)
            if url.scheme or url.netloc or value.startswith(("javascript:", "data:", "mailto:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(root)}: {value}"
            if root not in target.parents and target != root:
                problems.append(f"{where} (points outside the site)")
            elif not target.exists():
                problems.append(f"{where} (no file {target.relative_to(root)})")
            elif url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(url.fragment) not in ids:
                    problems.append(f"{where} (no id {url.fragment!r} in {target.relative_to(root)})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("vendor", help="fetch and unpack the offline assets into a folder")
    p.add_argument("dest", type=Path)
    p = sub.add_parser("links", help="check every internal link of a built site (offline)")
    p.add_argument("html_dir", type=Path, nargs="?", default=Path("_build/html"))
    args = parser.parse_args(argv)
    if args.command == "vendor":
        print(f"assets in {vendor(args.dest)}")
        return 0
    problems = check_links(args.html_dir)
    pages = len(site_pages(args.html_dir))
    for line in problems:
        print(line)
    print(f"{pages} pages checked, {len(problems)} broken internal link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
