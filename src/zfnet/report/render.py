"""The static HTML report (``reports/index.html`` + ``reports/pages/*.html``) from the Jinja2 templates in
``templates/`` (autoescaped: every value is text, never markup, unless it is pandas' escaped table HTML).

Opens from disk without a server: every link and image is relative to the page that holds it. The index
holds the claims, the key figures (the first of each group, linking to the group's page), the tables and
the provenance; each figure group gets a page with what its notes say (:mod:`zfnet.figures.notes`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from omegaconf import OmegaConf

from zfnet.io import write_text
from zfnet.report import collect
from zfnet.report.display import frame_html

VERDICTS = {"holds": "holds", "does not hold": "fails", "not measurable": "unmeasurable"}  # verdict -> CSS class
CLAIMS_COLUMNS = ("claim", "statistic", "ours", "control", "paper", "verdict", "reason", "figure")


@cache
def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("zfnet.report", "templates"), autoescape=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def href(target: str | Path, page_dir: Path) -> str:
    """``target`` relative to the page's folder, as a URL path."""
    return quote(Path(os.path.relpath(target, page_dir)).as_posix())


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "group"


def _file_links(path: Path, page_dir: Path) -> list[dict]:
    """A table's CSV and, when there is one, its Markdown copy."""
    return [{"href": href(p, page_dir), "name": p.name} for p in [path, path.with_suffix(".md")] if p.is_file()]


def _claims_table(frame: pd.DataFrame, targets: Mapping[str, tuple[str, str]]) -> dict:
    """A claims table: verdict coloured, ``figure`` (a figure group or a table's stem) linking to the group's
    page or the table's anchor (``targets``: name -> (href, title)); a name with neither stays text."""
    cols = [c for c in CLAIMS_COLUMNS if c in frame]
    cols += [c for c in frame.columns if c not in cols]
    rows = []
    for _, r in frame.iterrows():
        cells = []
        for c in cols:
            value = "–" if pd.isna(r[c]) else str(r[c])
            cell = {"text": value}
            if c == "verdict":
                cell["verdict"] = VERDICTS.get(value.strip().lower(), "unmeasurable")
            elif c == "figure" and value.strip() in targets:
                cell["href"], cell["text"] = targets[value.strip()]
            cells.append(cell)
        rows.append(cells)
    return {"columns": [str(c) for c in cols], "rows": rows}


def _claims(path: Path, frame: pd.DataFrame, targets, root: Path) -> dict:
    """The findings' table (ours beside the untrained network's ``control``), then the checks' (rows whose
    ``kind`` is ``check``: they test the code, not the paper)."""
    section = {"title": collect.TABLE_TITLES["claims"], "links": _file_links(path, root), "checks": None}
    if "kind" not in frame:
        return {**section, "findings": _claims_table(frame, targets)}
    kind = frame["kind"].astype(str).str.strip().str.lower()
    findings, checks = frame[kind != "check"].drop(columns="kind"), frame[kind == "check"].drop(columns="kind")
    return {**section, "findings": _claims_table(findings, targets),
            "checks": _claims_table(checks.drop(columns="control", errors="ignore"), targets) if len(checks) else ""}


def _cell(value, anchors: Mapping[str, dict], page_dir: Path) -> dict:
    """A notes table's cell: text, or ``{"ref": "<group>/<anchor>", "else": text}``, a link to that anchor."""
    if isinstance(value, Mapping) and "ref" in value:
        target = anchors.get(str(value["ref"]))
        if target is None:
            return {"text": str(value.get("else", ""))}
        return {"text": target["label"], "href": href(target["path"], page_dir)}
    return {"text": "–" if value is None else str(value)}


def _sections(notes: dict, anchors: Mapping[str, dict], page_dir: Path) -> list[dict]:
    """A group's notes' sections: text, a table shown like the report's, or a plain one with links."""
    shown = []
    for s in notes.get("sections") or []:
        table = s.get("table")
        section = {"title": str(s.get("title", "")), "text": str(s.get("text") or ""), "frame": None, "plain": None}
        if table and table.get("plain"):
            section["plain"] = {"columns": [str(c) for c in table["columns"]],
                                "rows": [[_cell(v, anchors, page_dir) for v in row] for row in table["rows"]]}
        elif table and table.get("rows"):
            section["frame"] = frame_html(pd.DataFrame(table["rows"], columns=table["columns"]))
        shown.append(section)
    return shown


def _anchors(notes: Mapping[str, dict]) -> dict[str, dict]:
    """``"<group>/<anchor>"`` -> ``{"label", "path"}``: every anchor of every group's notes."""
    return {f"{g}/{name}": {"label": str(a["label"]), "path": Path(n["folder"]) / a["file"]}
            for g, n in notes.items() if n.get("folder") for name, a in (n.get("anchors") or {}).items()}


def _nav(claims: bool, figures: bool, stems, atlas: str | None = None) -> list[dict]:
    """The index's links: claims, figures, the unit atlas (``atlas``: its index's href, when there is one), each
    table by its first word (once: ``dissection`` and ``dissection_top_units`` share one entry, the first),
    provenance."""
    items = [("#claims", "claims")] * claims + [("#figures", "figures")] * figures
    items += [(atlas, "unit atlas")] * (atlas is not None)
    for stem in stems:
        if stem.split("_")[0] not in {text for _, text in items}:
            items.append((f"#{stem}", stem.split("_")[0]))
    return [{"href": h, "text": t} for h, t in [*items, ("#provenance", "provenance")]]


def write_report(cfg) -> Path:
    """Write ``report.out`` (the index) and one page per figure group under ``pages/`` beside it."""
    env = environment()
    out = Path(cfg.report.out)
    root = out.parent
    pages_dir = root / "pages"
    title = str(cfg.report.title)
    found_tables = collect.tables(cfg)
    groups = collect.all_figure_groups(cfg)
    notes = collect.all_group_notes(cfg, list(groups))
    anchors = _anchors(notes)
    page_names = {group: f"{_slug(group)}.html" for group in groups}
    common = {"banner": collect.data_facts(cfg)}

    # one page per figure group
    written = set()
    for group, paths in groups.items():
        stems = [p.stem for p in paths]  # names shared in a group (finetune/<strategy>/...): the folders too
        figures = [{"src": href(p, pages_dir), "caption": "/".join([*p.parts[-3:-1], p.stem]) if stems.count(p.stem) > 1
                    else p.stem} for p in paths]
        others = [{"href": page_names[g], "name": g} for g in groups if g != group]
        page = env.get_template("group.html.j2").render(
            **common, title=notes[group]["title"], about=notes[group]["description"], figures=figures,
            sections=_sections(notes[group], anchors, pages_dir), back=href(out, pages_dir), others=others)
        written.add(write_text(pages_dir / page_names[group], page).name)
    if pages_dir.is_dir():
        for stale in pages_dir.glob("*.html"):
            if stale.name not in written:
                stale.unlink()

    # the index: the claims, key figures, tables, provenance
    metrics = collect.train_metrics(cfg)
    claims = found_tables.pop("claims", None)
    if claims is not None:
        targets = {**{g: (href(pages_dir / name, root), notes[g]["title"]) for g, name in page_names.items()},
                   **{stem: (f"#{stem}", collect.TABLE_TITLES.get(stem, stem)) for stem in found_tables}}
        claims = _claims(claims[0], claims[1], targets, root)
    key_figures = [{"src": href(paths[0], root), "link": href(pages_dir / page_names[g], root), "cls": "key",
                    "caption": f"{notes[g]['title']} ({len(paths)} figure{'s' if len(paths) > 1 else ''})"}
                   for g, paths in groups.items()]
    tables = []
    for stem, (path, frame) in found_tables.items():
        caption = (f"{metrics['epochs']} epochs, {metrics['num_classes']} classes (the training time is in the train "
                   "run's W&B summary and the stage's log)." if stem == "table2_imagenet" and metrics else "")
        tables.append({"stem": stem, "title": collect.TABLE_TITLES.get(stem, stem.replace("_", " ")),
                       "note": collect.table_note(path), "html": frame_html(frame, stem), "caption": caption,
                       "links": _file_links(path, root) if path is not None else []})
    rejected = collect.rejected_images(cfg)
    atlas = href(root / "atlas/index.html", root) if (root / "atlas/index.html").is_file() else None  # the atlas stage's pages
    page = env.get_template("index.html.j2").render(
        **common, title=title, nav=_nav(claims is not None, bool(groups), found_tables, atlas), claims=claims,
        key_figures=key_figures, tables=tables, provenance=[(k, str(v)) for k, v in collect.provenance(cfg).items()],
        rejected={"count": len(rejected), "html": frame_html(pd.DataFrame(rejected))} if rejected else None,
        params=OmegaConf.to_yaml(cfg, resolve=True))
    return write_text(out, page)
