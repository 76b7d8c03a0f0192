"""The atlas explorer: static pages over an atlas folder, opened from disk (``file://``) without a server.

``write_explorer(atlas_dir)`` reads ``atlas_dir/data/atlas.json`` and each layer's ``data/<layer>.json`` (the
atlas stage's output; format in the atlas contract: one record per map, paths relative to ``atlas_dir``) and
writes, from the Jinja2 templates in ``templates/`` (autoescaped: every value from the data is text):

* ``index.html``: the model, the images searched, what the atlas covers, each layer with its unit count;
* ``<layer>.html``: every unit once, as a card (its deconvnet grid, or its patches; unit number, top class,
  concept) carrying its statistics as ``data-*`` attributes, in channel order; a small embedded script sorts the
  cards (descending, units without the value last) and filters them by concept and top class. Without
  JavaScript the page still lists every unit in channel order. Thumbnails load lazily;
* ``units/<layer>/<unit>.html``: everything about one unit side by side, "not computed" where the data is null,
  links to the previous / next unit, its layer, the index and the report's figures (``report_links``).

Same data, same bytes: no dates, options sorted. Pages of layers or units no longer in the data are removed.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit

from zfnet.io import write_text
from zfnet.progress import bar

# (data key, what the sort control says): every sort is descending, units without the value last
SORTS = (("mean", "mean activation"), ("max", "max activation"), ("fire_rate", "fire rate"),
         ("selectivity", "class selectivity"), ("iou", "IoU"), ("ablation", "ablation drop"))
GRIDS = (("patches", "receptive-field patches"), ("deconv", "deconvnet projections"), ("guided", "guided backprop"))
NOT_COMPUTED = "not computed"


@cache
def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("zfnet.atlas.explorer", "templates"), autoescape=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def _load(path: Path, what: str) -> dict:
    """A JSON object of the atlas folder, or an error naming the file and what was expected."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file; expected the atlas's {what} (the atlas stage writes it)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); expected the atlas's {what}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object (the atlas's {what}), got {type(data).__name__}")
    return data


def _require(record: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(map(repr, missing))}")


def _number(value) -> float | None:
    """A finite number, or None (null, NaN: not computed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value)


def _fmt(value, spec: str = ".4g") -> str:
    number = _number(value)
    return NOT_COMPUTED if number is None else format(number, spec)


def _href(path, prefix: str = "") -> str | None:
    """A path of the data (relative to the atlas folder) as seen from a page ``prefix`` deep; URLs unchanged."""
    if not path:
        return None
    path = str(path)
    if urlsplit(path).scheme or path.startswith("/"):
        return path
    return prefix + quote(path)


def _page_name(layer: str) -> str:
    if not layer or "/" in layer or "\\" in layer or layer in (".", "..", "index"):
        raise ValueError(f"atlas layer name {layer!r}: not usable as a page name (<layer>.html beside index.html)")
    return f"{layer}.html"


def _unit_path(layer: str, unit: int) -> str:
    return f"units/{layer}/{unit}.html"


def _card(layer: str, u: dict) -> dict:
    """A unit on its layer's page: thumbnail, caption and the values the controls sort and filter by."""
    images = u.get("images") or {}
    return {"unit": u["unit"], "href": quote(_unit_path(layer, u["unit"])),
            "thumb": _href(images.get("deconv") or images.get("patches")),
            "top_class": _text(u.get("top_class")), "concept": _text(u.get("concept")),
            "data": [(key, "" if _number(u.get(key)) is None else repr(_number(u.get(key)))) for key, _ in SORTS]}


def _options(values) -> list[str]:
    return sorted({v for v in values if v is not None})


def _unit_page(atlas: dict, layer: str, units: list[dict], i: int) -> dict:
    """Everything one unit's page shows, with links relative to ``units/<layer>/``."""
    up = "../../"
    u = units[i]
    images = u.get("images") or {}
    near = {"previous": units[i - 1]["unit"] if i > 0 else None,
            "next": units[i + 1]["unit"] if i + 1 < len(units) else None}
    stats = [("mean activation", _fmt(u.get("mean"))), ("max activation", _fmt(u.get("max"))),
             ("fire rate", _fmt(u.get("fire_rate"), ".3g")), ("class selectivity", _fmt(u.get("selectivity"), ".3g")),
             ("top class", _text(u.get("top_class")) or NOT_COMPUTED),
             ("concept", _text(u.get("concept"))
              or (NOT_COMPUTED if u.get("iou") is None else "none (no concept overlaps)")),
             ("IoU", _fmt(u.get("iou"), ".3g")),
             ("ablation drop (top-1 accuracy lost when the unit alone is zeroed)", _fmt(u.get("ablation"), ".4f"))]
    return {
        "title": f"{layer} unit {u['unit']}", "layer": layer, "unit": u["unit"], "position": i + 1, "count": len(units),
        "index": up + "index.html", "layer_page": up + quote(_page_name(layer)), "report": _href(atlas["report"], up),
        "near": {k: None if n is None else f"{n}.html" for k, n in near.items()},
        "grids": [{"caption": caption, "src": _href(images.get(key), up)} for key, caption in GRIDS],
        "synthesis": _href(images.get("synthesis"), up), "evolution": _href(images.get("evolution"), up),
        "stats": stats,
        "top_classes": [{"name": str(c), "count": n} for c, n in u.get("top_classes") or []],
        "top": [{"rank": r + 1, "class": _text(t.get("class")) or "–", "value": _fmt(t.get("value")),
                 **{k: "–" if t.get(k) is None else t[k] for k in ("image_index", "y", "x")}}
                for r, t in enumerate(u.get("top") or [])],
        "report_links": [{"label": str(link.get("label") or link.get("href")), "href": _href(link.get("href"), up)}
                         for link in u.get("report_links") or [] if link.get("href")],
    }


def _read_layer(atlas_dir: Path, entry: dict, where: str) -> list[dict]:
    _require(entry, ("name", "file"), where)
    path = atlas_dir / entry["file"]
    data = _load(path, f"layer {entry['name']!r} (its units)")
    _require(data, ("units",), str(path))
    units = data["units"]
    if not isinstance(units, list):
        raise ValueError(f"{path}: 'units' must be a list of unit records")
    for j, u in enumerate(units):
        if not isinstance(u, dict):
            raise ValueError(f"{path}: units[{j}] must be a JSON object")
        _require(u, ("unit",), f"{path}: units[{j}]")
        if isinstance(u["unit"], bool) or not isinstance(u["unit"], int) or u["unit"] < 0:
            raise ValueError(f"{path}: units[{j}]['unit'] must be a channel number (an integer >= 0), got {u['unit']!r}")
    numbers = [u["unit"] for u in units]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{path}: a unit is listed twice (units {sorted(n for n in set(numbers) if numbers.count(n) > 1)})")
    return units


def _remove_stale(atlas_dir: Path, written: set[Path]) -> None:
    """Pages of a previous explorer whose layer or unit is no longer in the data."""
    stale = [p for p in atlas_dir.glob("*.html") if p not in written]
    stale += [p for p in (atlas_dir / "units").glob("*/*.html") if p not in written]
    for page in stale:
        page.unlink()
    for folder in (atlas_dir / "units").glob("*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def write_explorer(atlas_dir: str | Path) -> list[Path]:
    """Write the explorer's pages into ``atlas_dir`` (index, one per layer, one per unit); returns them."""
    atlas_dir = Path(atlas_dir)
    meta_path = atlas_dir / "data/atlas.json"
    atlas = _load(meta_path, "index (data/atlas.json)")
    _require(atlas, ("layers",), str(meta_path))
    atlas.setdefault("report", "../index.html")
    if not isinstance(atlas["layers"], list):
        raise ValueError(f"{meta_path}: 'layers' must be a list of {{'name', 'units', 'file'}}")
    env = environment()
    layers = []
    for n, entry in enumerate(atlas["layers"]):
        where = f"{meta_path}: layers[{n}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected {{'name', 'units', 'file'}}")
        layers.append((str(entry.get("name", "")), entry, where))
    names = [_page_name(name) for name, _, _ in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"{meta_path}: a layer is listed twice ({[name for name, _, _ in layers]})")

    written: list[Path] = []
    rows = []
    expected = sum(e.get("units", 0) for _, e, _ in layers if isinstance(e.get("units"), int))
    progress = bar(total=expected or None, desc="atlas pages", unit="unit")
    for n, (name, entry, where) in enumerate(layers):
        units = _read_layer(atlas_dir, entry, where)
        cards = [_card(name, u) for u in units]
        rows.append({"name": name, "href": quote(names[n]), "units": len(units),
                     "concepts": sum(c["concept"] is not None for c in cards)})
        nav = [{"href": quote(names[m]), "text": other, "current": m == n} for m, (other, _, _) in enumerate(layers)]
        page = env.get_template("layer.html.j2").render(
            title=f"{name}: {len(units)} units", layer=name, cards=cards, sorts=SORTS, layers=nav,
            concepts=_options(c["concept"] for c in cards), classes=_options(c["top_class"] for c in cards),
            index="index.html", report=_href(atlas["report"]))
        written.append(write_text(atlas_dir / names[n], page))
        template = env.get_template("unit.html.j2")
        for i in range(len(units)):
            unit = _unit_page(atlas, name, units, i)
            written.append(write_text(atlas_dir / _unit_path(name, units[i]["unit"]), template.render(**unit)))
            progress.update(1)
    progress.close()

    model = atlas.get("model") or {}
    page = env.get_template("index.html.j2").render(
        title="Unit atlas", layers=rows, total=sum(r["units"] for r in rows),
        model=[(k, str(v)) for k, v in model.items()] if isinstance(model, dict) else [("model", str(model))],
        images=atlas.get("images"), k=atlas.get("k"), report=_href(atlas["report"]),
        coverage=[(str(k), str(v)) for k, v in (atlas.get("coverage") or {}).items()])
    written.insert(0, write_text(atlas_dir / "index.html", page))
    _remove_stale(atlas_dir, set(written))
    return written
