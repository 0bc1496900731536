"""The study as a web page: a profile's executed notebooks rendered to static HTML.

Every page is self-contained (figures embedded, math as MathML that browsers draw themselves, no
script from a CDN), so results/<profile>/report/ opens offline, from disk or any web server.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import re
import sysconfig
from collections.abc import Callable
from pathlib import Path

import nbformat
import pandas as pd
from jinja2 import pass_context
from latex2mathml.converter import convert
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

from aclaudio.data.atomic import atomic_write_text
from aclaudio.study import artifacts

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 62em; margin: 1em auto 3em; padding: 0 1em;
       line-height: 1.5; color: #222; }
nav { margin-bottom: 1em; }
ul.notebooks { list-style: none; padding-left: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; border: 0; }
th, td { border: 0; border-bottom: 1px solid #ccc; padding: 3px 10px; text-align: left; }
.jp-OutputArea-output { overflow-x: auto; }
pre { background: #f5f5f5; padding: 0.5em; white-space: pre-wrap; font-size: 0.85em; }
[data-mime-type="application/vnd.jupyter.stderr"] pre { background: #fff3f0; }
img { max-width: 100%; }
figcaption { color: #555; }
.jp-CodeCell .jp-Cell-inputWrapper { display: none; }
#show-code:checked ~ .jp-CodeCell .jp-Cell-inputWrapper { display: block; }
label[for="show-code"] { color: #555; font-size: 0.9em; }
"""

#: A checkbox that shows the code cells, hidden by default: CSS alone, no script.
_SHOW_CODE = '<input type="checkbox" id="show-code"><label for="show-code">show code</label>\n'


def _page(title: str, body: str, *, nav: bool = True) -> str:
    """One HTML page in the study's style: the index and every notebook share it."""
    back = '<nav><a href="index.html">&larr; the study</a></nav>\n' if nav else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
{back}{body}
</body>
</html>
"""


class _MathMLRenderer(IPythonRenderer):
    """Markdown math as MathML instead of TeX left for MathJax, which would come from a CDN."""

    def block_math(self, body: str) -> str:
        return convert(body, display="block")

    def inline_math(self, body: str) -> str:
        return convert(body)


class _StudyExporter(HTMLExporter):
    """JupyterLab's cells without prompts and without the page around them (JupyterLab's 250 kB
    stylesheet, scripts from a CDN): the notebook read as a study, its code shown on request
    (_SHOW_CODE)."""

    def __init__(self) -> None:
        super().__init__(
            template_name="lab",
            template_file="base.html.j2",
            exclude_input_prompt=True,
            exclude_output_prompt=True,
        )

    @pass_context
    def markdown2html(self, context, source: str) -> str:
        renderer = _MathMLRenderer(escape=False, exclude_anchor_links=True)
        return MarkdownWithMath(renderer=renderer).render(source)


def title(notebook: nbformat.NotebookNode, default: str) -> str:
    """The notebook's first markdown heading, else `default`."""
    for cell in notebook.cells:
        heading = re.search(r"^#+\s+(.+)$", cell.source, re.MULTILINE)
        if cell.cell_type == "markdown" and heading:
            return heading.group(1).strip()
    return default


_WIDGET = "application/vnd.jupyter.widget-view+json"
#: The folders before an installed module's name (the lookbehind starts a match only where a path
#: starts, which keeps the search linear on long strings).
_INSTALLED = re.compile(r"(?<![^\s'\"<>])[^\s'\"<>]*site-packages[/\\]")


def _relabeller(folder: Path, label: str) -> Callable[[str], str]:
    """Text -> text with `folder` written as `label` where it is a whole path or starts one (""
    for the paths below it: relative to it), not where it only starts a name (/a/b in /a/bc)."""
    pattern = re.compile(re.escape(str(folder)) + r"(?:([/\\])|(?![\w-]|\.\w))")

    def relabelled(match: re.Match) -> str:
        if match.group(1):
            return f"{label}{match.group(1)}" if label else ""
        return label or "."

    return functools.partial(pattern.sub, relabelled)


def without_machine_paths(notebook: nbformat.NotebookNode) -> None:
    """Paths as a reader knows them, everywhere in an executed notebook but its images (outputs,
    the parameters cell that papermill injects, its metadata). Installed modules and Python's
    own are named from their package (warnings and tracebacks name them), this package as
    aclaudio/; the folders the notebook ran with are relative to the checkout that ran it (the
    folder above results_root; run_all.sh runs them from there, papermill itself from
    notebooks/) or, outside it, named by their last part; the rest of the current folder (the
    checkout, where run_all.sh makes the report) is relative to it, and the home folder is ~."""
    parameters = notebook.metadata.get("papermill", {}).get("parameters", {})
    given = [Path(v) for v in parameters.values() if isinstance(v, str) and os.path.isabs(v)]
    root = None
    if os.path.isabs(parameters.get("results_root", "")):
        root = Path(parameters["results_root"]).parent
        root = None if root == Path(root.anchor) else root  # results at the top: no checkout
    outside = [path for path in given if root is None or not path.is_relative_to(root)]
    folders = [  # the most specific first
        (Path(__file__).parents[1], "aclaudio"),  # this package's own warnings name its files
        *((path, path.name) for path in sorted(outside, key=lambda p: -len(p.parts))),
        *([(root, "")] if root else []),
        (Path.cwd(), ""),  # the folder the report is made in (run_all.sh: the checkout)
        (Path(sysconfig.get_paths()["stdlib"]), ""),
        (Path.home(), "~"),
    ]
    relabellers = [
        _relabeller(folder, label) for folder, label in folders if folder != Path(folder.anchor)
    ]

    def readable(text: str) -> str:
        text = _INSTALLED.sub("", text)
        for relabel in relabellers:
            text = relabel(text)
        return text

    def rewrite(node, key: str = ""):
        if key.startswith("image/"):  # base64 or SVG: a figure holds no path, and "/" is data
            return node
        if isinstance(node, str):
            return readable(node)
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if isinstance(node, dict):
            return type(node)((name, rewrite(value, name)) for name, value in node.items())
        return node

    notebook.update(rewrite(notebook))


def _same_on_every_run(notebook: nbformat.NotebookNode) -> None:
    """A fixed id for the parameters cell that papermill injects (it draws a new one on every
    execution), so that a rerun with the same results renders the same page."""
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"


def _without_widgets(notebook: nbformat.NotebookNode) -> None:
    """Progress bars out: JupyterLab draws them from the notebook's saved widget state, while a
    static page, with no widget manager, would keep an empty box under a random id."""
    for cell in notebook.cells:
        if "outputs" in cell:
            cell.outputs = [out for out in cell.outputs if _WIDGET not in out.get("data", {})]


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


def _index(profile: str, pages: dict[str, str], results: Path) -> str:
    """The index page: the notebooks, then the headline table and the key figure when the
    notebooks that make them ran (run_all.sh --only may run a few)."""
    items = "\n".join(
        f'<li><a href="{name}">{html.escape(text)}</a></li>' for name, text in pages.items()
    )
    page = f"""<h1>Angular contrastive learning of audio representations: the study</h1>
<p>A reproduction of <em>Self-supervised learning of audio representations using angular
contrastive loss</em> (S. Wang, S. Tripathy, A. Mesaros, ICASSP 2023), {profile} profile: the
{len(pages)} notebooks as <code>run_all.sh</code> executed them.</p>
<ul class="notebooks">
{items}
</ul>"""
    headline = artifacts.PRETRAINING_PAIRED.path(results)
    if headline.exists():
        table = pd.read_csv(headline)[["comparison", "verdict"]].to_html(index=False, border=0)
        page += f"""
<h2>Pretraining methods paired by seed</h2>
<p>Linear-evaluation accuracy on the test set: differences within a seed, with 95 % intervals.</p>
{table}"""
    figure = artifacts.ABLATION_HEATMAP_FIGURE.path(results)
    if figure.exists():
        page += f"""
<h2>The margin and alpha</h2>
<figure>
<img src="{_data_uri(figure)}" alt="ACL minus NT-Xent over the alpha x margin grid">
<figcaption>Each cell of the alpha x margin grid: its linear-evaluation accuracy minus
NT-Xent's (alpha = 1, where the margin plays no role), in points, the mean over seeds; the
title gives NT-Xent's accuracy, the paper's setting (alpha 0.3, m 0.5) is boxed. With fewer
than 3 seeds a cell the differences are descriptive (marked *).</figcaption>
</figure>"""
    return page


def write_report(results: str | Path) -> dict:
    """Render RESULTS/notebooks/*.ipynb to RESULTS/report/: one page per notebook and an index
    with the key figure and the headline table. The executed notebooks are saved back without
    machine paths and with a fixed id for papermill's parameters cell, as they get committed.
    Returns what it wrote."""
    results = Path(results)
    notebooks = sorted((results / "notebooks").glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks in {results / 'notebooks'}")
    out = results / "report"
    out.mkdir(exist_ok=True)
    exporter = _StudyExporter()
    pages = {}
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        pages[f"{path.stem}.html"] = title(notebook, path.stem)
        without_machine_paths(notebook)
        _same_on_every_run(notebook)
        atomic_write_text(path, nbformat.writes(notebook))
        _without_widgets(notebook)
        cells = exporter.from_notebook_node(notebook)[0]
        page = _page(pages[f"{path.stem}.html"], _SHOW_CODE + cells)
        atomic_write_text(out / f"{path.stem}.html", page)
    index = _index(results.name, pages, results)
    atomic_write_text(
        out / "index.html", _page(f"aclaudio: the study ({results.name})", index, nav=False)
    )
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"report": str(out), "pages": ["index.html", *pages], "bytes": size}
