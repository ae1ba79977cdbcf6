"""A self-contained HTML report: sections of paragraphs, pictures (files beside the page, linked
relatively) and tables of measured numbers (design.md, Conventions: pictures where people would
rather look)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from mien.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; margin-top: 2.2rem; }
figure { display: inline-block; margin: 0.6rem 1rem 0.6rem 0; vertical-align: top; }
figure img { image-rendering: pixelated; border: 1px solid #ccc; max-width: 100%; }
figcaption { font-size: 0.85rem; color: #555; max-width: 40rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } .meta { color: #666; font-size: 0.9rem; }
"""


@dataclass
class Section:
    title: str
    blocks: list[str] = field(default_factory=list)

    def text(self, paragraph: str) -> "Section":
        self.blocks.append(f"<p>{html.escape(paragraph)}</p>")
        return self

    def image(self, path: Path, page_dir: Path, caption: str = "") -> "Section":
        rel = Path(path).resolve().relative_to(Path(page_dir).resolve()).as_posix()
        self.blocks.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def table(self, header: list[str], rows: list[list], caption: str = "") -> "Section":
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_page(path: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Write the page atomically; pictures are referenced relative to its folder."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(subtitle)}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>" + "\n".join(s.blocks))
    parts.append("</body></html>")
    return atomic_write_text(path, "\n".join(parts))
