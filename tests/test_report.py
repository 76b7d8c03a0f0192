"""The static report and the W&B summary run: generic over tables and figure folders, relative links that
hold from disk, W&B disabled or failing never breaks the stage; the report of a real tiny pipeline run
opened in Debian's headless chromium."""

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from browser import check_report
from helpers import Dom, offline_records
from helpers import figure_index
from zfnet.stages.report import run as report_stage


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.href, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.src.append(attrs["src"])
        if tag == "a":
            self.href.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text())
    return links


def _png(path: Path, colour, size=(12, 8)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[...] = colour
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture
def outputs(tiny_cfg, tmp_path):
    """What the report reads, made by hand: training metrics, two tables (one of a stage the report does
    not know), a figure group listed in a visualize part's index and a folder of figures that is not, prepare's stats and
    one rejected image."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/train.json").write_text(json.dumps({
        "val_top1_error": 0.5, "val_top5_error": 0.25, "val_10crop_top1_error": 0.45, "chance_top1_error": 2 / 3,
        "epochs": 2, "num_classes": 3}))
    tables = tmp_path / "reports/tables"
    tables.mkdir(parents=True)
    (tables / "table3_ablation.csv").write_text("variant,val top-1 (ours),val top-1 (paper)\nzfnet,50.0,38.4\nalexnet,,40.5\n")
    (tables / "table5_caltech256.csv").write_text("training images per class,ours (%),paper (%)\n15,20.5,65.7\n60,31.0,74.2\n")
    figures = tmp_path / "reports/figures"
    pixels = {"filters/conv1 zfnet.png": _png(figures / "filters/conv1 zfnet.png", (200, 10, 10)),
              "transfer/curve.png": _png(figures / "transfer/curve.png", (10, 200, 10), (20, 10))}
    (figures / "index").mkdir()
    (figures / "index" / "deconv.json").write_text(json.dumps({"filters": ["reports/figures/filters/conv1 zfnet.png"]}))
    prepared = tmp_path / "data/prepared"
    prepared.mkdir(parents=True)
    (prepared / "stats.json").write_text(json.dumps({"train": {"seen": 5, "written": 4, "rejected": 1}}))
    (prepared / "rejected.csv").write_text("split,path,reason,detail\ntrain,train/n1/bad.JPEG,unreadable,truncated file\n")
    return tiny_cfg, tmp_path, pixels


def test_report_shows_every_table_and_figure_folder_with_links_that_hold(outputs):
    cfg, root, _ = outputs
    index = report_stage(cfg)
    assert index == Path("reports/index.html")
    page = parse(root / index)
    text = " ".join(page.text)
    assert "Table 3: architecture ablations" in text and "Table 5: Caltech-256" in text
    assert "Table 2: ImageNet 2012 classification error" in text and "38.4" in text and "50.0" in text
    assert "74.2" in text and "65.7" in text  # a table of a stage the report has no code for
    assert "train/n1/bad.JPEG" in text and "unreadable" in text and "5 seen = 4 written + 1 rejected" in text
    pages = sorted((root / "reports/pages").glob("*.html"))
    assert [p.name for p in pages] == ["filters.html", "transfer.html"]  # the unlisted folder too
    seen_images = set()
    for html_file in [root / index, *pages]:
        parsed = parse(html_file)
        for ref in parsed.src + parsed.href:
            parts = urlsplit(ref)
            assert not parts.scheme, ref  # relative: opens from disk, moves with the folder
            if parts.path:
                target = (html_file.parent / unquote(parts.path)).resolve()
                assert target.is_file(), (html_file.name, ref)
        seen_images |= {(html_file.parent / unquote(s)).resolve() for s in parsed.src}
    assert seen_images == {(root / "reports/figures" / p).resolve() for p in ("filters/conv1 zfnet.png", "transfer/curve.png")}


def _offline_runs(root: Path):
    return sorted((root / "wandb").glob("offline-run-*/run-*.wandb"))


def test_summary_run_logs_every_table_and_figure(outputs):
    cfg, root, pixels = outputs
    report_stage(cfg)
    (log,) = _offline_runs(root)
    records = offline_records(log)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.job_type == "summary"
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                history[".".join(item.nested_key) or item.key] = json.loads(item.value_json)
    files = log.parent / "files"
    for stem in ("table3_ablation", "table5_caltech256"):
        logged = json.loads((files / history[f"tables/{stem}.path"]).read_text())
        with (root / f"reports/tables/{stem}.csv").open(newline="") as f:
            header, *rows = list(csv.reader(f))
        assert logged["columns"] == header
        assert [[None if isinstance(v, float) and np.isnan(v) else v for v in row] for row in logged["data"]] == [
            [float(c) if c.replace(".", "").isdigit() else (None if c == "" else c) for c in row] for row in rows]
    for name, key in (("filters/conv1 zfnet.png", "figures/filters/conv1 zfnet"), ("transfer/curve.png", "figures/transfer/curve")):
        logged = np.asarray(Image.open(files / history[f"{key}.path"]).convert("RGB"))
        assert np.array_equal(logged, pixels[name]), key


def test_wandb_disabled_writes_the_report_and_no_run(outputs, monkeypatch):
    cfg, root, _ = outputs
    monkeypatch.setenv("WANDB_MODE", "disabled")
    report_stage(cfg)
    assert (root / "reports/index.html").stat().st_size > 0
    assert not _offline_runs(root)


def test_failing_wandb_writes_the_report_and_warns(outputs, monkeypatch, caplog):
    import wandb

    def unreachable(**kwargs):
        raise ConnectionError("api.wandb.ai unreachable")

    cfg, root, _ = outputs
    monkeypatch.setattr(wandb, "init", unreachable)
    report_stage(cfg)
    assert (root / "reports/index.html").stat().st_size > 0 and (root / "reports/pages/filters.html").is_file()
    assert "W&B could not start" in caplog.text


def test_a_bad_table_is_named(outputs):
    cfg, root, _ = outputs
    (root / "reports/tables/table9.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="table9.csv"):
        report_stage(cfg)


def test_a_bad_notes_file_is_named(outputs):
    cfg, root, _ = outputs
    (root / "reports/figures/filters/notes.json").write_text("{title: not json")
    with pytest.raises(ValueError, match=r"filters/notes.json: not a figure group's notes"):
        report_stage(cfg)
    (root / "reports/figures/filters/notes.json").write_text('["a list"]')
    with pytest.raises(ValueError, match=r"filters/notes.json: not a figure group's notes: expected a JSON object"):
        report_stage(cfg)


@pytest.mark.slow
def test_report_of_a_pipeline_run_in_headless_chromium(tiny_pipeline, tmp_path):
    """Debian's chromium opens reports/index.html from disk: the page loads, every image on it and on every
    linked page decodes from a non-empty file, no link is broken; a full-page screenshot is kept."""
    index = tiny_pipeline.work / "reports/index.html"
    shot = tmp_path / "report.png"
    check = check_report(index, shot)
    print(f"\nscreenshot of the report: {shot}")
    assert not check.problems, "\n".join(check.problems)
    reports = (tiny_pipeline.work / "reports").resolve()
    pages = {p.name for p in check.pages if p.relative_to(reports).parts[0] != "atlas"}
    figures = figure_index(tiny_pipeline.work / "reports/figures")
    folders = OmegaConf.load(tiny_pipeline.work / "params.yaml").report.figure_folders  # other stages' figures
    assert pages == {"index.html"} | {f"{Path(f).name}.html" for f in folders} | {f"{group}.html" for group in figures}
    # the unit atlas, reached from the report's link: its index, every layer's page and every unit's page
    atlas = json.loads((reports / "atlas/data/atlas.json").read_text())
    want = {"atlas/index.html"} | {f"atlas/{layer['name']}.html" for layer in atlas["layers"]} | {
        f"atlas/units/{layer['name']}/{u}.html" for layer in atlas["layers"] for u in range(layer["units"])}
    assert {p.relative_to(reports).as_posix() for p in check.pages if p.relative_to(reports).parts[0] == "atlas"} == want
    shown = {Path(unquote(urlsplit(img["url"]).path)).resolve() for imgs in check.images.values() for img in imgs}
    assert shown >= {(tiny_pipeline.work / p).resolve() for paths in figures.values() for p in paths}
    assert any(href.endswith("table3_ablation.csv") for href in check.links[index.resolve()])
    picture = np.asarray(Image.open(shot).convert("L"))
    assert picture.shape[0] > 1000 and picture.shape[1] >= 1000 and picture.std() > 10  # a whole page, not blank
    shutil.copy(shot, tiny_pipeline.work.parent / "report.png")  # kept beside the pipeline run's copy


def test_markup_in_any_input_is_shown_as_text(outputs):
    """A table cell, a claim, a rejected image's path, a figure group's notes: markup in them is text on the
    page, never an element (the templates escape every value; pandas escapes its table cells)."""
    from zfnet.figures.notes import write_notes

    cfg, root, _ = outputs
    attack = "<script>alert(1)</script>"
    (root / "reports/tables/table5_caltech256.csv").write_text(f"training images per class,ours (%)\n{attack},1\n")
    (root / "reports/tables/claims.csv").write_text(
        f'claim,ours,paper,verdict,figure\n"{attack}",<b>1</b>,2,holds,"<img src=x onerror=alert(2)>"\n')
    (root / "data/prepared/rejected.csv").write_text(f"split,path,reason,detail\ntrain,{attack},unreadable,x\n")
    write_notes(root / "reports/figures/transfer", f"Transfer {attack}", f"about {attack}",
                sections=[{"title": attack, "text": attack, "table": {"plain": True, "columns": [attack], "rows": [[attack]]}}])
    report_stage(cfg)
    for page in (root / "reports/index.html", root / "reports/pages/transfer.html"):
        dom = Dom()
        dom.feed(page.read_text())
        assert not [t for t, _ in dom.tags if t in ("script", "b")], page.name
        assert [a for t, a in dom.tags if t == "img"] == [a for t, a in dom.tags if t == "img" and set(a) == {"src", "alt"}]
        shown = "".join(dom.text)
        if page.name == "index.html":  # the table cell, the claim, the rejected path, the group's key figure
            assert shown.count(attack) == 4 and "<img src=x onerror=alert(2)>" in shown and "<b>1</b>" in shown
        else:  # title (twice: <title>, <h1>), description, section title, text, column, cell
            assert shown.count(attack) == 7, shown


def test_groups_titled_and_ordered_by_their_notes(outputs):
    """A group's notes give its page's heading, description and place; a group without notes is titled after
    its folder and comes after those with one."""
    from zfnet.figures.notes import write_notes

    cfg, root, _ = outputs
    _png(root / "reports/figures/zeta/z.png", (1, 2, 3))
    write_notes(root / "reports/figures/zeta", "Zeta: first", "What zeta shows.", order=1)
    write_notes(root / "reports/figures/filters", "Filters: second", order=2)
    report_stage(cfg)
    index = (root / "reports/index.html").read_text()
    captions = [c for c in parse(root / "reports/index.html").text if c.endswith((" figure)", " figures)"))]
    assert captions == ["Zeta: first (1 figure)", "Filters: second (1 figure)", "Transfer (1 figure)"]
    page = parse(root / "reports/pages/zeta.html")
    assert "Zeta: first" in page.text and "What zeta shows." in page.text and "Zeta: first" in index
