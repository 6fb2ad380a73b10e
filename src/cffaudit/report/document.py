"""A report as Markdown blocks and figures, written as self-contained HTML plus a Markdown twin.

The HTML embeds every figure as a base64 PNG so the single file can be mailed or opened
offline; the Markdown references the same PNGs saved under `figures/`. The Markdown
produced by this package uses a small subset (headings, pipe tables, '- ' lists,
paragraphs), which `markdown_to_html` converts without a Markdown library.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from pathlib import Path
from typing import Union

from cffaudit.atomic import atomic_write_bytes, atomic_write_text

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1.5rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #00798c; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
h3, h4 { margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .86rem; }
th, td { border: 1px solid #d8d8d8; padding: .25rem .55rem; }
th { background: #f2f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
td.status-differs, td.status-claim-fails { color: #b00020; font-weight: 600; }
td.status-alternative-reproduces, td.status-not-in-data { color: #9a6700; font-weight: 600; }
td.status-reproduces, td.status-claim-holds { color: #1a7f37; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
ul { margin: .3rem 0 .8rem; }
.meta { color: #666; font-size: .85rem; }
"""


@dataclasses.dataclass(frozen=True)
class _Figure:
    name: str
    png: bytes
    caption: str


Block = Union[str, _Figure]


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _table_html(lines: list[str]) -> str:
    def cells(line: str) -> list[str]:
        # Split on the unescaped pipes only; an escaped one (`\|`) belongs to a label.
        inner = re.sub(r"^\||(?<!\\)\|$", "", line.strip())
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]

    head = cells(lines[0])
    rule = cells(lines[1]) if len(lines) > 1 else []
    right = [r.endswith(":") and not r.startswith(":") for r in rule]
    status_col = head.index("status") if "status" in head else -1
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>"]
    for line in lines[2:]:
        row = []
        for i, c in enumerate(cells(line)):
            cls = []
            if i < len(right) and right[i]:
                cls.append("num")
            if i == status_col:
                cls.append("status-" + re.sub(r"[^a-z]+", "-", c.lower()).strip("-"))
            attr = f' class="{" ".join(cls)}"' if cls else ""
            row.append(f"<td{attr}>{_inline(c)}</td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def markdown_to_html(md: str) -> str:
    """Convert the Markdown subset this package writes (headings, tables, lists, paragraphs)."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table_html(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- )", lines[i].lstrip()):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


class ReportDocument:
    """An ordered list of Markdown text and figures.

    Args:
        title: The document title (first heading).
        meta: A line under the title (inputs, versions).
    """

    def __init__(self, title: str, meta: str = ""):
        self.title = title
        self.meta = meta
        self.blocks: list[Block] = []

    def add_markdown(self, text: str) -> None:
        """Append Markdown text."""
        self.blocks.append(text)

    def add_figure(self, name: str, png: bytes, caption: str) -> None:
        """Append a figure; `name` becomes `figures/<name>.png` in the Markdown twin."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"name: figure names are file names, got {name!r}")
        self.blocks.append(_Figure(name, png, caption))

    @property
    def figures(self) -> list[_Figure]:
        """The figures, in order."""
        return [b for b in self.blocks if isinstance(b, _Figure)]

    def to_markdown(self) -> str:
        """The Markdown twin; figures point to `figures/<name>.png`."""
        parts = [f"# {self.title}", ""]
        if self.meta:
            parts += [self.meta, ""]
        for b in self.blocks:
            if isinstance(b, _Figure):
                parts += [f"![{b.caption}](figures/{b.name}.png)", "", f"*{b.caption}*", ""]
            else:
                parts += [b.rstrip(), ""]
        return "\n".join(parts)

    def to_html(self) -> str:
        """One self-contained HTML page (CSS inline, figures as data URIs)."""
        body = [f"<h1>{_inline(self.title)}</h1>"]
        if self.meta:
            body.append(f'<p class="meta">{_inline(self.meta)}</p>')
        for b in self.blocks:
            if isinstance(b, _Figure):
                data = base64.b64encode(b.png).decode("ascii")
                body.append(
                    f'<figure id="fig-{b.name}"><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
                )
            else:
                body.append(markdown_to_html(b))
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )

    def write(self, out_dir: Union[str, Path], stem: str = "report") -> dict[str, Path]:
        """Write `<stem>.html`, `<stem>.md` and `figures/*.png` into `out_dir`.

        Returns:
            Paths written, keyed 'html', 'markdown', 'figures'.
        """
        out = Path(out_dir)
        figdir = out / "figures"
        figdir.mkdir(parents=True, exist_ok=True)
        for f in self.figures:
            # The project's atomic writer has no public bytes variant; its core takes a mode.
            atomic_write_bytes(figdir / f"{f.name}.png", f.png)
        html_path, md_path = out / f"{stem}.html", out / f"{stem}.md"
        atomic_write_text(html_path, self.to_html())
        atomic_write_text(md_path, self.to_markdown())
        return {"html": html_path, "markdown": md_path, "figures": figdir}

