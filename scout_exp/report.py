"""Self-contained HTML reports, opened from disk (no server, no CDN): an explain run's pairs and a leaderboard.

:func:`write_run_report` writes ``report.html`` in an explain run folder: the run's settings, its
scores beside the chance rows (mean [95% bootstrap CI], n), one table row per pair with a thumbnail
of its figure (a base64 JPEG data URI linking to the full figure by relative path), its classes,
confidence and scores, and the other figures. :func:`write_leaderboard_report` writes a
leaderboard's table with a link to every run's own report. Click a column header to sort (again to
reverse; undefined values stay last); the filter keeps the rows whose chosen score lies in
[min, max]. Only the standard library (and OpenCV for the thumbnails) is used.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from scout_exp.io import atomic_path

#: width of the embedded thumbnails, pixels (JPEG; about 10 kB each)
THUMB_WIDTH = 240
SIDES = ("image_1", "image_2")
#: pair-level scalars shown when a run's records hold them (scout: piou; verify: cosine, distance, decision)
PAIR_FIELDS = ("k", "piou", "cosine", "distance", "same_person")
#: per-image fields shown before the scores (scout: class -> counter-class and confidence; verify: the share of
#: similar evidence)
SIDE_FIELDS = ("class", "confidence", "similar_share")
#: chance rows of the summary: ``chance_<key>_<score>``
CHANCE = (("random", "random map"), ("face", "whole face"), ("centre", "centre prior"))

Cell = tuple[Any, str, str]  # (sort value, cell HTML, tooltip)

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:middle}
td.t,th.t{text-align:left}
th{background:#f2f2f2}
th[data-col]{cursor:pointer;user-select:none}th[colspan]{text-align:center}
th[data-col]:hover{background:#e2e8f0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
th small{display:block;font-weight:normal;color:#555;white-space:nowrap;text-align:right}
tr.chance td{color:#666;font-style:italic;background:#fafafa}
td.na{color:#aaa}
img.thumb{display:block}
.meta{color:#444}.meta b{color:#222}
.figs a{display:inline-block;margin:0 8px 8px 0;text-align:center;font-size:12px}
#filter{margin:.5em 0}#filter input{width:6em}
"""

SCRIPT = """
(function(){
for(const t of document.querySelectorAll('table.sortable')){
  const body=t.tBodies[0];
  const val=(tr,c)=>{const v=tr.cells[c].dataset.v;if(v===undefined||v==='')return null;const n=Number(v);return isNaN(n)?v:n;};
  t.tHead.addEventListener('click',e=>{
    const th=e.target.closest('th[data-col]');if(!th)return;
    const c=+th.dataset.col,asc=th.getAttribute('aria-sort')!=='ascending';
    for(const o of t.tHead.querySelectorAll('th[aria-sort]'))o.removeAttribute('aria-sort');
    th.setAttribute('aria-sort',asc?'ascending':'descending');
    const rows=[...body.rows];
    rows.sort((a,b)=>{const x=val(a,c),y=val(b,c);
      if(x===null||y===null)return (x===null)-(y===null);
      const d=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});
      return asc?d:-d;});
    body.append(...rows);
  });
  const f=document.getElementById('filter');
  if(!f||f.dataset.table!==t.id)continue;
  const col=f.querySelector('select'),lo=f.querySelector('[name=min]'),hi=f.querySelector('[name=max]'),out=f.querySelector('output');
  const apply=()=>{const c=+col.value,a=parseFloat(lo.value),b=parseFloat(hi.value);let shown=0;
    for(const tr of body.rows){const v=val(tr,c);
      const keep=(isNaN(a)&&isNaN(b))||(typeof v==='number'&&!(v<a)&&!(v>b));
      tr.hidden=!keep;shown+=keep;}
    out.textContent=shown+' of '+body.rows.length+' rows shown';};
  for(const el of [col,lo,hi])el.addEventListener('input',apply);
  apply();
}})();
"""


def fmt(value: Any) -> str:
    """A table value as text: 3 decimals (1 from 100 on), yes/no, and an em dash for undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def score_text(summary: Mapping[str, Any], key: str) -> str:
    """``mean [low, high] (n=N)`` of a summary score, as much of it as the summary holds ('' when absent)."""
    mean = summary.get(key)
    if key not in summary:
        return ""
    text = fmt(mean)
    ci = summary.get(f"{key}_ci") or [None, None]
    if all(isinstance(v, (int, float)) for v in ci):
        text += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
    if f"{key}_n" in summary:
        text += f" (n={summary[f'{key}_n']})"
    return text


def thumbnail(path: Path, width: int = THUMB_WIDTH) -> str | None:
    """A ``data:`` URI of a JPEG thumbnail of the image at ``path``; None when it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def _figure_link(folder: Path, rel: str | None, width: int = THUMB_WIDTH) -> str:
    """A thumbnail of ``folder / rel`` linking to the figure itself (by its relative path)."""
    if not rel:
        return ""
    uri = thumbnail(folder / rel, width)
    inner = f'<img class="thumb" src="{uri}" alt="{escape(rel)}">' if uri else escape(rel)
    return f'<a href="{escape(rel)}">{inner}</a>'


def _cell(value: Any, text: str | None = None, tip: str = "") -> Cell:
    sort = "" if value is None or isinstance(value, float) and not math.isfinite(value) else value
    return (int(sort) if isinstance(sort, bool) else sort), escape(fmt(value) if text is None else text), tip


def _td(cell: Cell, text_column: bool = False) -> str:
    sort, html, tip = cell
    classes = " ".join(c for c in ("t" if text_column else "", "na" if sort == "" else "") if c)
    attrs = f' data-v="{escape(str(sort))}"' + (f' class="{classes}"' if classes else "")
    attrs += f' title="{escape(tip)}"' if tip else ""
    return f"<td{attrs}>{html}</td>"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def _filter(table_id: str, columns: Sequence[tuple[int, str]], default: int | None = None) -> str:
    """The filter bar of ``table_id``: a score (its column index) and a [min, max] range."""
    if not columns:
        return ""
    options = "".join(
        f'<option value="{i}"{" selected" if i == default else ""}>{escape(label)}</option>' for i, label in columns
    )
    return (
        f'<div id="filter" data-table="{table_id}">Filter: <select>{options}</select> '
        '<label>min <input name="min" type="number" step="any"></label> '
        '<label>max <input name="max" type="number" step="any"></label> <output></output></div>'
    )


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _scores(summary: Mapping[str, Any]) -> list[str]:
    """The summary's scores (those with a CI), chance rows left out, in the summary's order."""
    return [k for k in summary if f"{k}_ci" in summary and not k.startswith("chance_")]


def _summary_table(summary: Mapping[str, Any], scores: Sequence[str]) -> str:
    chance = [(key, label) for key, label in CHANCE if any(f"chance_{key}_{s}" in summary for s in scores)]
    head = "".join(f"<th>chance: {escape(label)}</th>" for _, label in chance)
    rows = []
    for s in scores:
        cells = "".join(f"<td>{escape(score_text(summary, f'chance_{key}_{s}'))}</td>" for key, _ in chance)
        rows.append(f'<tr><td class="t">{escape(s)}</td><td>{escape(score_text(summary, s))}</td>{cells}</tr>')
    return (
        "<table><thead><tr><th class=t>score</th><th>this run</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "<p class=meta>mean [95% bootstrap CI] (n = images where the score is defined), over both images of every pair.</p>"
    )


def _compact(record: Mapping[str, Any]) -> dict[str, Any]:
    """The scalars of a record the table shows (curves, maps and lists dropped): small per pair."""

    def scalars(d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is None or isinstance(v, (int, float, str, bool))}

    out = scalars(record)
    out["parts"] = list(record.get("discriminative_parts") or [])
    for side in SIDES:
        if isinstance(record.get(side), Mapping):
            out[side] = scalars(record[side])
    return out


def write_run_report(
    out_dir: str | os.PathLike[str], header: Mapping[str, Any], records: Iterable[Mapping[str, Any]]
) -> Path:
    """Write ``<out_dir>/report.html`` of an explain run: ``header`` is explanations.json's (``summary``,
    ``figures``), ``records`` its per-pair records (streamed; only their scalars are kept)."""
    out = Path(out_dir)
    summary = header.get("summary", {})
    rows = [_compact(r) for r in records]
    scores = _scores(summary)
    names = summary.get("gallery")

    def present(fields: Iterable[str], side: str | None = None) -> list[str]:
        return [f for f in fields if any(f in (r.get(side, {}) if side else r) for r in rows)]

    pair_fields = present(PAIR_FIELDS)
    side_fields = {s: present(SIDE_FIELDS, s) + present(scores, s) for s in SIDES}
    has_parts = any(r["parts"] for r in rows)

    def th(label: str, col: int, note: Sequence[str] = (), tip: str = "", text: bool = False, span: str = "") -> str:
        attrs = f' data-col="{col}"' + (' class="t"' if text else "") + (f' title="{escape(tip)}"' if tip else "")
        note_html = "".join(f"<small>{escape(n)}</small>" for n in note)
        return f"<th{span}{attrs}>{escape(label)}{note_html}</th>"

    def score_note(field: str) -> tuple[list[str], str]:
        if field not in scores:
            return [], ""
        chance = [(label, score_text(summary, f"chance_{key}_{field}")) for key, label in CHANCE]
        chance = [(label, text) for label, text in chance if text]
        note = [f"run {fmt(summary.get(field))}"] + [
            f"{label.split()[0]} {fmt(summary.get(f'chance_{key}_{field}'))}"
            for key, label in CHANCE
            if f"chance_{key}_{field}" in summary
        ]
        tip = f"{field}: this run {score_text(summary, field)}" + "".join(f"; {lab}: {t}" for lab, t in chance)
        return note, tip

    tall = ' rowspan="2"'
    top = th("pair", 0, text=True, span=tall) + f'<th{tall} class="t">figure</th>'
    col = 2
    if has_parts:
        top += th("differing parts", col, text=True, span=tall)
        col += 1
    for f in pair_fields:
        top += th(f, col, span=tall)
        col += 1
    second, numeric = [], []
    for side in SIDES:
        for f in side_fields[side]:
            note, tip = score_note(f)
            counter = f == "class" and any("counter_class" in r.get(side, {}) for r in rows)
            label = "class \u2192 counter" if counter else f.replace("_", " ")
            second.append(th(label, col, note, tip))
            if f != "class":
                numeric.append((col, f"image {side[-1]}: {f}"))
            col += 1
        if side_fields[side]:
            top += f'<th colspan="{len(side_fields[side])}">image {side[-1]}</th>'
    numeric = [(i, f) for i, f in enumerate(pair_fields, start=2 + has_parts)] + numeric

    def klass(c: Any) -> str:
        if isinstance(c, int) and isinstance(names, list) and 0 <= c < len(names):
            return f"{names[c]} ({c})"
        return fmt(c)

    body = []
    for r in rows:
        cells = [_td(_cell(r.get("pair")), True), f'<td class="t">{_figure_link(out, r.get("figure"))}</td>']
        if has_parts:
            cells.append(_td(_cell(", ".join(r["parts"]) or None), True))
        cells += [_td(_cell(r.get(f))) for f in pair_fields]
        for side in SIDES:
            values = r.get(side, {})
            for f in side_fields[side]:
                v = values.get(f)
                if f == "class":
                    arrow = f" \u2192 {klass(values['counter_class'])}" if "counter_class" in values else ""
                    cells.append(_td(_cell(v, klass(v) + arrow)))
                    continue
                tip = "; ".join(
                    f"{label}: {fmt(values[f'chance_{key}_{f}'])}"
                    for key, label in CHANCE
                    if f"chance_{key}_{f}" in values
                )
                cells.append(_td(_cell(v, tip=tip)))
        body.append("<tr>" + "".join(cells) + "</tr>")

    setting = " \u00b7 ".join(
        f"<b>{escape(k)}</b> {escape(str(summary[k]))}"
        for k in ("mode", "attribution", "layer", "variant", "confidence", "pairs", "wall_time_s")
        if k in summary
    )
    pair_figures = {r.get("figure") for r in rows}
    others = [f for f in header.get("figures", []) if f not in pair_figures]
    title = f"explain report: {summary.get('attribution', '')} {summary.get('variant', '')}".strip()
    links = " \u00b7 ".join(
        f'<a href="{n}">{n}</a>'
        for n in ("explanations.json", "summary.json", "config_resolved.yaml")
        if (out / n).exists()
    )
    default = next((i for i, f in numeric if f.endswith(": precision")), numeric[0][0] if numeric else None)
    parts = [
        f"<h1>{escape(title)}</h1>",
        f"<p class=meta>{setting}<br>checkpoint: {escape(str(summary.get('checkpoint', '')))}<br>{links}</p>",
    ]
    if scores:
        parts += ["<h2>Scores and chance rows</h2>", _summary_table(summary, scores)]
    parts += [
        f"<h2>Pairs ({len(rows)})</h2>",
        "<p class=meta>Click a column header to sort (again to reverse); hover a score for the image's chance "
        "values and a header for the run's CIs; a figure opens at full size.</p>",
        _filter("pairs", numeric, default),
        f'<table id="pairs" class="sortable"><thead><tr>{top}</tr><tr>{"".join(second)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>",
    ]
    if others:
        parts += [
            "<h2>Figures</h2>",
            '<div class="figs">' + "".join(_figure_link(out, f, 2 * THUMB_WIDTH) for f in others) + "</div>",
        ]
    return _write(out / "report.html", _page(title, "\n".join(parts)))


def write_leaderboard_report(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    metric: str,
    lower_is_better: bool,
    figure: str | None = None,
) -> Path:
    """Write a leaderboard's ``report.html``: ``rows`` as :func:`scout_exp.sweeps.leaderboard.leaderboard`
    builds them (``name``, ``pairs``, ``n``, ``chance``, a (mean, low, high) cell per column and
    ``report``, a run report's path relative to ``path``'s folder, or None); ``figure`` the plot's
    relative path."""
    path = Path(path)
    head = ['<th data-col="0" class="t">setting</th>', '<th data-col="1">pairs</th>', '<th data-col="2">n</th>']
    head += [f'<th data-col="{3 + i}">{escape(c)}<small>mean [95% CI]</small></th>' for i, c in enumerate(columns)]
    head.append('<th class="t">report</th>')
    body = []
    for r in rows:
        cells = [_td(_cell(r["name"]), True), _td(_cell(r.get("pairs"))), _td(_cell(r.get("n")))]
        for c in columns:
            cell = r.get(c)
            if not cell:
                cells.append(_td(_cell(None)))
                continue
            mean, lo, hi = cell
            text = f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]" if math.isfinite(lo) else fmt(mean)
            cells.append(_td(_cell(mean, text)))
        link = f'<a href="{escape(r["report"])}">report</a>' if r.get("report") else ""
        cells.append(f'<td class="t">{link}</td>')
        body.append(f"<tr{' class=chance' if r.get('chance') else ''}>" + "".join(cells) + "</tr>")
    order = "lower" if lower_is_better else "higher"
    parts = [
        f"<h1>Leaderboard: {escape(metric)}</h1>",
        f"<p class=meta>Sorted by {escape(metric)} ({order} is better); mean [95% bootstrap CI]; setting = attribution / "
        f"variant / confidence / layer; n = images where {escape(metric)} is defined; chance rows in grey italics. "
        "Click a header to sort.</p>",
        _filter("board", [(3 + i, c) for i, c in enumerate(columns)], 3),
        f'<table id="board" class="sortable"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table>',
    ]
    if figure:
        parts.append(f'<div class="figs">{_figure_link(path.parent, figure, 3 * THUMB_WIDTH)}</div>')
    return _write(path, _page(f"leaderboard: {metric}", "\n".join(parts)))
