"""The atlas explorer's pages, parsed as a browser's parser sees them, against the data of a hand-made atlas
folder (tests/helpers.py: fake_atlas): every unit once, its values on its card, nulls "not computed", every
image and link a file that exists, markup in the data shown as text, the same bytes for the same data; and
the report's link to the atlas."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from helpers import ATLAS_MARKUP_CLASS, Dom, fake_atlas
from zfnet.atlas.explorer import write_explorer

SORT_KEYS = ("mean", "max", "fire_rate", "selectivity", "iou", "ablation")


def dom(page: Path) -> Dom:
    d = Dom()
    d.feed(page.read_text(encoding="utf-8"))
    return d


def target(page: Path, url: str) -> Path:
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc, f"{page}: {url} is not a relative path"
    return (page.parent / unquote(parts.path)).resolve()


def data(atlas: Path, layer: str) -> list[dict]:
    return json.loads((atlas / f"data/{layer}.json").read_text())["units"]


@pytest.fixture
def atlas(tmp_path) -> Path:
    folder = fake_atlas(tmp_path)
    write_explorer(folder)
    return folder


def test_every_page_written_and_every_image_and_link_is_a_file(tmp_path):
    folder = fake_atlas(tmp_path)
    pages = write_explorer(folder)
    units = {layer: len(data(folder, layer)) for layer in ("conv1", "conv2")}
    expected = {folder / "index.html", folder / "conv1.html", folder / "conv2.html"}
    expected |= {folder / f"units/{layer}/{n}.html" for layer, count in units.items() for n in range(count)}
    assert pages[0] == folder / "index.html" and set(pages) == expected and len(pages) == len(expected)
    assert set(folder.rglob("*.html")) == expected
    for page in pages:
        d = dom(page)
        assert d.find("title") is not None and "".join(d.text).strip()
        for img in d.find("img"):
            assert target(page, img["src"]).is_file(), (page, img["src"])
        for a in d.find("a"):
            assert target(page, a["href"]).is_file(), (page, a["href"])
        assert not d.find("link") and all("src" not in a for a in d.find("script")), "nothing fetched"
    report = dom(folder / "index.html")
    assert [a["href"] for a in report.find("a")] == ["../index.html", "conv1.html", "conv2.html"]


def test_layer_page_lists_every_unit_once_with_its_values(atlas):
    for layer in ("conv1", "conv2"):
        units = data(atlas, layer)
        d = dom(atlas / f"{layer}.html")
        cards = d.find("div", **{"class": "card"})
        assert [int(c["data-unit"]) for c in cards] == [u["unit"] for u in units] == list(range(len(units)))
        for card, u in zip(cards, units):
            for key in SORT_KEYS:
                shown = card[f"data-{key}"]
                assert (shown == "") if u[key] is None else float(shown) == u[key], (layer, u["unit"], key)
            assert card["data-concept"] == (u["concept"] or "") and card["data-top_class"] == u["top_class"]
        thumbs = d.find("img")
        assert len(thumbs) == len(units) and all(t["loading"] == "lazy" for t in thumbs)
        want = [u["images"]["deconv"] or u["images"]["patches"] for u in units]  # deconv, else the patches
        assert [unquote(t["src"]) for t in thumbs] == want
        links = [a["href"] for a in d.find("a") if a["href"].startswith("units/")]
        assert links == [f"units/{layer}/{u['unit']}.html" for u in units]
        options = _options(atlas / f"{layer}.html")
        assert options["concept"] == ["*", "-"] + [f"={c}" for c in sorted({u["concept"] for u in units} - {None})]
        assert options["top_class"] == ["*"] + [f"={c}" for c in sorted({u["top_class"] for u in units})]
        assert dom(atlas / f"{layer}.html").find("div", id="controls")[0].keys() >= {"hidden"}  # until JS runs
    assert "patches" in unquote(dom(atlas / "conv2.html").find("img")[0]["src"])


def _options(page: Path) -> dict[str, list[str]]:
    """Each select's option values, by the select's id."""
    out, current = {}, None
    for tag, attrs in dom(page).tags:
        if tag == "select":
            current = out.setdefault(attrs["id"], [])
        elif tag == "option":
            current.append(attrs["value"])
    return out


def test_unit_page_shows_everything_and_says_not_computed(atlas):
    units = data(atlas, "conv1")
    page = atlas / "units/conv1/4.html"  # guided, selectivity, iou, ablation, evolution null; synthesis there
    d = dom(page)
    text = "".join(d.text)
    u = units[4]
    srcs = [unquote(i["src"]) for i in d.find("img")]
    assert srcs == [f"../../{u['images'][k]}" for k in ("patches", "deconv", "synthesis")]
    stats = _table_rows(page)
    assert stats["mean activation"] == "0.1" and stats["max activation"] == "4" and stats["fire rate"] == "0.55"
    for what in ("class selectivity", "concept", "IoU"):
        assert stats[what] == "not computed", what
    assert [v for k, v in stats.items() if k.startswith("ablation drop")] == ["not computed"]
    assert text.count("not computed") == 6  # the four statistics, guided backprop, evolution
    assert [r for r in _table_rows(atlas / "units/conv1/3.html").items() if r[0] in ("concept", "IoU")] == \
        [("concept", "stripes"), ("IoU", "0.05")]
    nav = {a.get("rel"): a["href"] for a in d.find("a")}
    assert nav["prev"] == "3.html" and nav["next"] == "5.html"
    hrefs = [a["href"] for a in d.find("a")]
    assert hrefs[:2] == ["../../index.html", "../../conv1.html"] and "../../../index.html" in hrefs
    first, last = dom(atlas / "units/conv1/0.html"), dom(atlas / "units/conv1/5.html")
    assert not first.find("a", rel="prev") and not last.find("a", rel="next")
    assert [a["href"] for a in first.find("a") if "figures" in a["href"]] == ["../../../figures/x.png"]
    assert target(atlas / "units/conv1/0.html", "../../../figures/x.png") == (atlas.parent / "figures/x.png").resolve()
    top = _cells(atlas / "units/conv1/0.html", "td")
    for t in units[0]["top"]:  # rank, image, class, activation, y, x
        assert [str(t["image_index"]), t["class"], format(t["value"], ".4g"), str(t["y"]), str(t["x"])] in \
            [top[i + 1:i + 6] for i in range(len(top) - 5)]


def _table_rows(page: Path) -> dict[str, str]:
    """The page's two-cell rows (<tr><th>what</th><td>value</td>) as what -> value."""

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell, self.cells = {}, None, []

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.cells = []
            if tag in ("th", "td"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("th", "td"):
                self.cells.append("".join(self.cell))
                self.cell = None
            if tag == "tr" and len(self.cells) == 2:
                self.rows.setdefault(*self.cells)

        def handle_data(self, text):
            if self.cell is not None:
                self.cell.append(text)

    rows = Rows()
    rows.feed(page.read_text(encoding="utf-8"))
    return rows.rows


def _cells(page: Path, tag: str) -> list[str]:
    """The text of every <tag> cell of the page, in order."""

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.cell = [], None

        def handle_starttag(self, t, attrs):
            if t == tag:
                self.cell = []

        def handle_endtag(self, t):
            if t == tag:
                self.cells.append("".join(self.cell))
                self.cell = None

        def handle_data(self, text):
            if self.cell is not None:
                self.cell.append(text)

    cells = Cells()
    cells.feed(page.read_text(encoding="utf-8"))
    return cells.cells


def test_markup_in_the_data_is_text(atlas):
    """A class name with <b> and an entity, a coverage note with <...>: text on every page, never an element."""
    for page in atlas.rglob("*.html"):
        d = dom(page)
        assert {t for t, _ in d.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "nav",
                                          "a", "span", "p", "div", "button", "label", "select", "option", "img", "br",
                                          "i", "strong", "script", "section", "figure", "figcaption", "table", "thead", "tbody",
                                          "tr", "th", "td", "ul", "li"}, page
    layer = dom(atlas / "conv1.html")
    assert layer.find("div", id="u0")[0]["data-top_class"] == ATLAS_MARKUP_CLASS
    assert ATLAS_MARKUP_CLASS in layer.text and f"={ATLAS_MARKUP_CLASS}" in _options(atlas / "conv1.html")["top_class"]
    unit = dom(atlas / "units/conv1/0.html")
    assert "".join(unit.text).count(ATLAS_MARKUP_CLASS) == 4  # top class, top classes, two top images
    assert "<no probe set>" in dom(atlas / "index.html").text


def test_same_data_same_bytes_and_pages_of_removed_units_go(tmp_path):
    folder = fake_atlas(tmp_path)
    first = {p: p.read_bytes() for p in write_explorer(folder)}
    assert {p: p.read_bytes() for p in write_explorer(folder)} == first
    meta = json.loads((folder / "data/atlas.json").read_text())
    meta["layers"] = meta["layers"][:1]  # conv2 gone
    (folder / "data/atlas.json").write_text(json.dumps(meta))
    conv1 = json.loads((folder / "data/conv1.json").read_text())
    conv1["units"] = conv1["units"][:4]
    (folder / "data/conv1.json").write_text(json.dumps(conv1))
    pages = write_explorer(folder)
    assert set(folder.rglob("*.html")) == set(pages) == {folder / "index.html", folder / "conv1.html"} | {
        folder / f"units/conv1/{n}.html" for n in range(4)}
    assert not (folder / "units/conv2").exists() and (folder / "img/conv2").is_dir()  # the data stays
    assert not dom(folder / "units/conv1/3.html").find("a", rel="next")


def test_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/atlas\.json: no such file; expected the atlas's index"):
        write_explorer(tmp_path / "nothing")
    folder = fake_atlas(tmp_path)
    conv2 = json.loads((folder / "data/conv2.json").read_text())
    del conv2["units"][3]["unit"]
    (folder / "data/conv2.json").write_text(json.dumps(conv2))
    with pytest.raises(ValueError, match=r"data/conv2\.json: units\[3\]: missing 'unit'"):
        write_explorer(folder)
    (folder / "data/conv2.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"data/conv2\.json: not JSON .*layer 'conv2'"):
        write_explorer(folder)
    meta = json.loads((folder / "data/atlas.json").read_text())
    meta["layers"][1]["name"] = "index"
    (folder / "data/atlas.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"layer name 'index': not usable as a page name"):
        write_explorer(folder)


def test_the_report_links_the_atlas_when_there_is_one(tiny_cfg, tmp_path):
    from zfnet.report import write_report

    index = write_report(tiny_cfg)
    assert not [a for a in dom(index).find("a") if "atlas" in a["href"]]
    atlas = fake_atlas(index.parent.parent / "atlas-src")  # an atlas folder, then moved where the stage writes it
    atlas.rename(index.parent / "atlas")
    write_explorer(index.parent / "atlas")
    index = write_report(tiny_cfg)
    links = [a["href"] for a in dom(index).find("a") if "atlas" in a["href"]]
    assert links == ["atlas/index.html"] and target(index, links[0]) == (index.parent / "atlas/index.html").resolve()
