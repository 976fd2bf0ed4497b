"""Plain HTML building for a page that opens from disk: the page's style, pictures as data: URIs,
escaped tables. No script, no server, no external reference."""

from __future__ import annotations

import base64
import math
from html import escape

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:0 20px 40px}
header{background:#24344d;color:#fff;padding:18px 20px}header div{max-width:1180px;margin:0 auto}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#cfd8e6}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 20px;z-index:1}
nav a{margin-right:16px;color:#24344d;text-decoration:none;font-size:14px}
h2{margin:28px 0 8px;font-size:19px;border-bottom:2px solid #24344d;padding-bottom:3px}
h3{font-size:15px;margin:16px 0 6px}
.note{color:#555;font-size:13px}.warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:13px;background:#fff;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#eef1f5}
td.l,th.l{text-align:left}tfoot td{font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:12px;align-items:start}
.grid img,figure img{max-width:100%;height:auto}figure{margin:0}
.scroll{overflow-x:auto}
.cm td{min-width:26px;text-align:center}.cm th{font-weight:normal}
.mistakes{display:grid;grid-template-columns:repeat(auto-fill,minmax(310px,1fr));gap:10px}
.mistake{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;font-size:12px}
.mistake img{width:144px;height:144px;object-fit:contain;background:#111}
.mistake .names{word-break:break-all;color:#555}
code{font-size:12px}details summary{cursor:pointer;color:#24344d}
"""


def uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, **attrs) -> str:
    extra = "".join(f' {k}="{escape(str(v))}"' for k, v in attrs.items())
    return f'<img src="{uri(png)}" alt="{escape(alt)}"{extra}>'


def num(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(header, rows, left=1, attrs="", foot=None) -> str:
    """An HTML table; the first `left` columns are left-aligned; cells are escaped."""
    def cells(row, tag):
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{escape(str(c))}</{tag}>'
                       for i, c in enumerate(row))
    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>"
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    tail = f"<tfoot><tr>{cells(foot, 'td')}</tr></tfoot>" if foot else ""
    return f"<table {attrs}>{head}<tbody>{body}</tbody>{tail}</table>"


def key_values(d: dict, attrs: str = "") -> str:
    return table(("key", "value"), [(k, value(v)) for k, v in d.items()], left=2, attrs=attrs)


def value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | tuple):
        return " ".join(map(str, v)) if all(not isinstance(x, dict | list) for x in v) else str(v)
    return "-" if v is None else str(v)
