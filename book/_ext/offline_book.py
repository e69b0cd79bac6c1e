"""Sphinx extension: the built book needs nothing from another host and logs no errors.

1. Badges served by the book. Notebooks carry the Open-in-Colab badge as an image on
   colab.research.google.com (written by `dl4nlp sync`, so that the badge shows on
   GitHub and in Colab). In the built book the image points at the project's own
   `_static/colab-badge.svg` instead; the link itself still goes to Colab.
2. The widget manager must be there. `nb_ipywidgets_js` names scripts in
   html_static_path; the widget manager (`@jupyter-widgets/html-manager`) is not in git
   but fetched by scripts/fetch_widget_manager.sh (`dl4nlp book` runs it). A missing
   file is a warning, so a `-W` build fails instead of publishing pages whose widgets
   never appear.
3. Each <script> once per page. Sphinx 7.4 includes an inline script that an extension
   registers after the builder started (sphinx-thebe's `const THEBE_JS_URL = ...`,
   sphinx-togglebutton's selector) twice, once as filename None and once as "", so
   every page logged "SyntaxError: Identifier 'THEBE_JS_URL' has already been
   declared". The repeats are dropped just before each page is written.

tests/test_browser.py fails on any request to another host and on any console error,
so it notices when either stops working.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Remote image -> file in html_static_path (book/_static) that the book serves instead.
LOCAL_IMAGES = {
    "https://colab.research.google.com/assets/colab-badge.svg": "colab-badge.svg",
}


def _serve_images_locally(app, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    static = posixpath.relpath("_static", posixpath.dirname(docname) or ".")
    for image in doctree.findall(nodes.image):
        local = LOCAL_IMAGES.get(image.get("uri", ""))
        if local is not None:
            image["uri"] = posixpath.join(static, local)
            image["candidates"] = {"*": image["uri"]}


def _check_widget_scripts(app) -> None:
    if app.builder.format != "html":
        return
    static = [Path(app.confdir, folder) for folder in app.config.html_static_path]
    for script in getattr(app.config, "nb_ipywidgets_js", {}) or {}:
        if "://" in script or script.startswith("//"):
            continue
        if not any((folder / script).is_file() for folder in static):
            logger.warning(f"nb_ipywidgets_js: {script} is in no html_static_path folder: "
                           "run scripts/fetch_widget_manager.sh")


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", _check_widget_scripts)
    app.connect("doctree-resolved", _serve_images_locally)
    # Late (priority 900): after myst-nb and sphinx.ext.mathjax add their per-page scripts.
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
