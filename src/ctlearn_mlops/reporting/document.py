"""A report: headed sections of text, tables and figures, written as PNGs, PDF and one HTML file."""

import base64
import contextlib
import html
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ..rundir import directory_mode

__all__ = ["Report", "atomic_directory"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #345; } h2 { margin-top: 1.6em; color: #345; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #eef; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; max-width: 520px; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.best { font-weight: bold; color: #063; }
"""


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Report:
    def __init__(self, title):
        self.title = title
        self.blocks = []  # (kind, heading, payload)

    def text(self, heading, text):
        self.blocks.append(("text", heading, text))

    def preformatted(self, heading, text):
        self.blocks.append(("pre", heading, text))

    def table(self, heading, header, rows, highlight_best=None):
        """``highlight_best``: 'min' or 'max' marks the best value of each numeric column."""
        self.blocks.append(("table", heading, (header, rows, highlight_best)))

    def figure(self, name, fig, caption=""):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        self.blocks.append(("figure", name, (buffer.getvalue(), caption, fig)))

    @property
    def figures(self):
        return [(name, payload[0]) for kind, name, payload in self.blocks if kind == "figure"]

    def _table_html(self, header, rows, highlight_best):
        best = {}
        if highlight_best:
            for j in range(1, len(header)):
                numbers = [r[j] for r in rows if isinstance(r[j], int | float) and r[j] == r[j]]
                if numbers:
                    best[j] = min(numbers) if highlight_best == "min" else max(numbers)
        out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
        for row in rows:
            cells = []
            for j, value in enumerate(row):
                cls = ' class="best"' if j in best and value == best[j] else ""
                cells.append(f"<td{cls}>{html.escape(_format(value))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        return "\n".join(out) + "</table>"

    def html(self):
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        for kind, heading, payload in self.blocks:
            if kind == "figure":
                png, caption, _ = payload
                data = base64.b64encode(png).decode()
                parts.append(
                    f"<figure><img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption or heading)}</figcaption></figure>"
                )
                continue
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            if kind == "text":
                parts.append(f"<p>{html.escape(payload)}</p>")
            elif kind == "pre":
                parts.append(f"<pre>{html.escape(payload)}</pre>")
            elif kind == "table":
                parts.append(self._table_html(*payload))
        parts.append("</body></html>")
        return "\n".join(parts)

    def _text_pages(self, pdf):
        lines = [self.title, ""]
        for kind, heading, payload in self.blocks:
            if kind == "figure":
                continue
            lines += [f"== {heading} =="]
            if kind in ("text", "pre"):
                lines += str(payload).splitlines()
            else:
                header, rows, _ = payload
                widths = [max(len(_format(x)) for x in col) for col in zip(header, *rows)]
                for row in [header, *rows]:
                    lines.append("  ".join(_format(v).ljust(w) for v, w in zip(row, widths)))
            lines.append("")
        per_page = 60
        for start in range(0, len(lines), per_page):
            fig = Figure(figsize=(8.27, 11.69))
            fig.text(0.05, 0.97, "\n".join(lines[start:start + per_page]), va="top", family="monospace", fontsize=7)
            pdf.savefig(fig)

    def write(self, directory, metrics=None):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, png in self.figures:
            (directory / f"{name}.png").write_bytes(png)
        with PdfPages(directory / "report.pdf") as pdf:
            self._text_pages(pdf)
            for kind, _, payload in self.blocks:
                if kind == "figure":
                    pdf.savefig(payload[2])
        (directory / "report.html").write_text(self.html())
        if metrics is not None:
            (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


@contextmanager
def atomic_directory(final, overwrite=False):
    """Yield a temporary directory that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    made = [d for d in (final.parent, *final.parent.parents) if not d.exists()]  # removed again if left empty
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        os.chmod(tmp, directory_mode())  # mkdtemp's 0700 would hide the report from the group the runs are shared with
        yield tmp
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} exists")
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory in made:  # innermost first: nothing is left of a write that did not happen
            with contextlib.suppress(OSError):
                directory.rmdir()
