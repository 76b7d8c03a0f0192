"""The report read as a researcher reads it (issue 15): the loss panel's training curve, Table 1's headers,
provenance that says dirty only for source changes, the demo-data banner on top, Table 7's training sizes,
occlusion against chance on correctly classified images, and the claims table first."""

from __future__ import annotations

import itertools
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from helpers import photo_folder, user_model_config
from PIL import Image

from zfnet.provenance import git_state
from zfnet.report import display_frame, log_summary, write_report
from zfnet.stages.visualize.occlusion import occlusion_vs_boxes


# --- 1. the loss panel -----------------------------------------------------------------------------
def test_the_loss_panel_has_the_training_curve(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from zfnet.figures.training import plot_history

    history = tmp_path / "history.csv"  # the columns zfnet.training writes
    history.write_text("epoch,lr,train_loss,train_top1_error,val_loss,val_top1_error,val_10crop_top1_error\n"
                       "1,0.01,2.30,0.9,2.25,0.85,0.84\n2,0.01,1.90,0.7,2.00,0.75,0.74\n")
    closed = []
    monkeypatch.setattr(plt, "close", lambda fig=None: closed.append(fig))
    plot_history(history, tmp_path / "curves.png")
    loss_axis = closed[0].axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in loss_axis.get_lines()}
    assert lines["train"] == [2.30, 1.90] and lines["val (centre crop)"] == [2.25, 2.00]
    plt.close(closed[0])


# --- 2. Table 1's headers ----------------------------------------------------------------------------
def test_table1_reads_as_the_papers_layout():
    raw = pd.DataFrame({"occlusion": ["Right eye", "Random"], "delta_layer5_mean": [0.4677, 0.5375],
                        "delta_layer5_std": [0.0402, 0.0419], "delta_layer7_mean": [0.17, 0.197],
                        "delta_layer7_std": [0.017, 0.015], "paper_delta_layer5_mean": [0.067, 0.107],
                        "paper_delta_layer5_std": [0.007, 0.017], "paper_delta_layer7_mean": [0.069, 0.073],
                        "paper_delta_layer7_std": [0.015, 0.014], "repeats": [5, 5], "size": [9, 9]})
    shown = display_frame(raw, "table1_correspondence")
    assert list(shown.columns) == ["occluded part", "Δ layer 5 (ours)", "Δ layer 5 (paper)", "Δ layer 7 (ours)",
                                   "Δ layer 7 (paper)", "random draws", "square (px)"]
    assert shown.iloc[0].tolist()[:3] == ["Right eye", "0.468 ± 0.040", "0.067 ± 0.007"]  # docs/paper.md Table 1


# --- 3. provenance: dirty only for source changes ---------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def test_provenance_is_clean_after_the_pipeline_wrote_and_dirty_after_a_source_edit(tmp_path):
    repo = tmp_path / "repo"
    files = {"src/a.py": "x = 1\n", "params.yaml": "train:\n  lr: 0.01\n  epochs: 2\n", "data/.gitignore": "/demo\n",
             "dvc.lock": "schema: '2.0'\nstages:\n  table:\n    cmd: x\n    outs:\n    - path: reports/t.csv\n",
             "reports/t.csv": "a\n1\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "c")
    head = _git(repo, "rev-parse", "--short", "HEAD").strip()
    assert git_state(repo) == {"git revision": head}

    # what `dvc repro` / `dvc exp run -S train.lr=0.02` write: lock, DVC's .gitignore entries, outputs, params
    (repo / "dvc.lock").write_text(files["dvc.lock"] + "    - path: reports/u.csv\n")
    (repo / "data/.gitignore").write_text("/demo\n/prepared\n")
    (repo / "reports/t.csv").write_text("a\n2\n")
    (repo / "params.yaml").write_text("train:\n  lr: 0.02\n  epochs: 2\n")
    (repo / "src/untracked.py").write_text("y = 2\n")
    _git(repo, "add", "dvc.lock")
    state = git_state(repo)
    assert state["git revision"] == head
    assert "train.lr=0.02" in state["experiment params"] and "epochs" not in state["experiment params"]

    (repo / "src/a.py").write_text("x = 2\n")
    assert git_state(repo)["git revision"].startswith(f"{head}+dirty (src/a.py")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    assert git_state(nowhere)["git revision"].startswith("unknown")


# --- 4., 5., 7. the index page --------------------------------------------------------------------------
class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.links, self.classes, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "a":
            self.links.append(attrs["href"])
        if attrs.get("class"):
            self.classes.append(attrs["class"])

    def handle_data(self, data):
        self.text.append(data)


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path)


@pytest.fixture
def run_outputs(tiny_cfg, tmp_path):
    cfg = tiny_cfg
    tables = Path(cfg.report.tables_dir)
    tables.mkdir(parents=True)
    (tables / "table3_ablation.csv").write_text("variant,val top-1 (ours),val top-1 (paper)\nzfnet,50.0,38.4\n")
    (tables / "table7_layers.csv").write_text("classifier (layer),Caltech-256 2/class (ours),Caltech-256 2/class (untrained),"
                                              "Caltech-256 60/class (paper)\nSVM (7),62.5,12.5,71.7\n")
    figures = Path(cfg.visualize.out_dir)
    for group in ("occlusion", "fig6"):
        _png(figures / group / "a.png")
    prepared = Path(cfg.prepare.out_dir)
    prepared.mkdir(parents=True, exist_ok=True)
    (prepared / "classes.json").write_text(json.dumps({"wnids": [f"n{i:08d}" for i in range(10)]}))
    (prepared / "stats.json").write_text(json.dumps({"train": {"seen": 401, "written": 400, "rejected": 1},
                                                     "val": {"seen": 100, "written": 100, "rejected": 0}}))
    return cfg, tmp_path


CLAIMS = ("claim,statistic,ours,paper,verdict,reason,figure\n"
          "Occlusion minimum on the object,inside vs chance,3 of 3 (p=0.5),most,not measurable,p >= 0.05,occlusion\n"
          "Clipping keeps filters alive,dead filters,0.0,0.0,holds,,fig6\n"
          "Deeper layers transfer better,layer 7 vs 1,+20,+41,does not hold,demo data,table7_layers\n"
          "Something without a figure,x,1,2,holds,,no_such_group\n")


def test_claims_come_first_coloured_and_linked(run_outputs):
    cfg, root = run_outputs
    (Path(cfg.report.tables_dir) / "claims.csv").write_text(CLAIMS)
    index = write_report(cfg)
    page = Page()
    page.feed(index.read_text())
    assert page.sections[0] == "claims" and page.sections.index("claims") < page.sections.index("figures")
    assert page.sections.count("claims") == 1  # not again among the tables
    for verdict in ("verdict holds", "verdict fails", "verdict unmeasurable"):
        assert verdict in page.classes
    for ref in page.links:
        parts = urlsplit(ref)
        if parts.path:
            assert (index.parent / unquote(parts.path)).resolve().is_file(), ref
        if parts.fragment:
            assert parts.fragment in page.sections, ref
    assert "pages/occlusion.html" in page.links and "pages/fig6.html" in page.links and "#table7_layers" in page.links
    assert "no_such_group" in " ".join(page.text)  # shown as text, not a broken link

    class Tracker:
        def __init__(self):
            self.tables = {}

        def table(self, key, frame):
            self.tables[key] = frame

        def image(self, *args, **kwargs):
            pass

        def images(self, images):
            pass

        def summary(self, *args):
            pass

        def artifact(self, *args, **kwargs):
            pass

    tracker = Tracker()
    log_summary(tracker, cfg)
    assert list(tracker.tables["tables/claims"].columns) == ["claim", "statistic", "ours", "paper", "verdict", "reason", "figure"]
    reduced = tracker.tables["reduced_run"]  # the dashboard shows the same departures as the report's banner
    assert list(reduced.columns) == ["what", "key", "ours", "paper"]
    assert "train.epochs" in set(reduced.key) and "ImageNet 2012: synthetic demo data" in set(reduced.what)


def test_claims_table_shows_the_control_and_lists_checks_apart(run_outputs):
    """The claims stage's own table (findings with their untrained control, a check) as the report shows it:
    a control column in the findings' table, the check in a table of its own below, no 'kind' column."""
    from zfnet.claims import verdicts as vd
    from zfnet.claims.collect import table

    cfg, _ = run_outputs
    rows = [vd.Claim(id="noclip_dominance", claim="A few filters dominate", statistic="max / median RMS", ours="4.10",
                     paper="a few", verdict=vd.HOLDS, reason="", figure="fig6", value=4.1, control="1.17 untrained",
                     control_value=1.17),
            vd.Claim(id="clip_bound", claim="No filter exceeds the clip", statistic="max RMS", ours="0.0990",
                     paper="<= 0.1", verdict=vd.HOLDS, reason="", figure="fig6", value=0.099, kind=vd.CHECK)]
    frame = table(rows[::-1])  # the check first: the table puts findings first anyway
    frame.to_csv(Path(cfg.report.tables_dir) / "claims.csv", index=False)
    text = write_report(cfg).read_text()
    body = text[text.index('id="claims"'):]
    checks = body.index("Checks (they test the code, not the paper)")
    assert body.index("<th>control</th>") < body.index("A few filters dominate") < checks
    assert body.index("1.17 untrained") < checks < body.index("No filter exceeds the clip")
    assert "<th>kind</th>" not in text and body[checks:].count("<table>") >= 1


def test_no_claims_file_no_claims_section(run_outputs):
    cfg, _ = run_outputs
    page = Page()
    page.feed(write_report(cfg).read_text())
    assert "claims" not in page.sections and "#claims" not in page.links


def test_navigation_names_each_table_family_once_and_every_link_lands(run_outputs):
    """Tables that share a first word (the dissect stage's two) get one navigation entry, the first's."""
    cfg, _ = run_outputs
    for stem in ("dissection", "dissection_top_units"):
        (Path(cfg.report.tables_dir) / f"{stem}.csv").write_text("layer,units\nconv5,4\n")
    text = write_report(cfg).read_text()
    nav = Page()
    nav.feed(text[text.index("<nav>"):text.index("</nav>")])
    page = Page()
    page.feed(text)
    assert nav.text == ["figures", "dissection", "table3", "table7", "provenance"]
    assert nav.links == ["#figures", "#dissection", "#table3_ablation", "#table7_layers", "#provenance"]
    assert all(link[1:] in page.sections for link in nav.links) and "dissection_top_units" in page.sections


def test_demo_banner_on_top_and_table7_says_its_training_sizes(run_outputs):
    from html import unescape

    from zfnet.tables import write_table
    from zfnet.transfer.experiments import table7_note

    cfg, _ = run_outputs
    cfg.transfer.table7.caltech256 = 2
    table7 = Path(cfg.report.tables_dir) / "table7_layers"  # as the transfer stage writes it: with its note
    write_table(pd.read_csv(table7.with_suffix(".csv")), table7, note=table7_note(cfg))
    text = write_report(cfg).read_text()
    banner = text.index('class="banner"')
    assert banner < text.index("<nav>") and banner < text.index('id="figures"')
    assert "Synthetic demo data (profile tiny)" in text and "10 classes, 400 train + 100 val images" in text
    # the reduced-run notice: each departure from the paper's setting with the key that sets it
    assert "Reduced run" in text and "<code>train.epochs</code>" in text and "ImageNet classes: <strong>10</strong>" in text
    assert "ImageNet 2012: synthetic demo data" in text
    note = text[text.index('id="table7_layers"'):]
    note = unescape(note[note.index('<p class="note">'):note.index("<table")])
    assert "ours 2 (caltech101), 2 (caltech256); the paper's 30 (caltech101), 60 (caltech256)" in note
    assert "The sizes differ" in note
    table = text[text.index('id="table7_layers"'):]
    table = unescape(table[table.index("<table"):table.index("</table>")])
    assert "Caltech-256 2/class (untrained)" in table and "12.5" in table  # the untrained control's column
    assert 'class="banner"' in (Path(cfg.report.out).parent / "pages/occlusion.html").read_text()


# --- 6. occlusion against chance ------------------------------------------------------------------------
def _maps(min_at, target, predicted, n=8, size=8):
    prob = torch.full((n, n), 0.9)
    prob[min_at] = 0.1
    grid = torch.arange(n) * size
    return {"prob": prob, "ys": grid, "xs": grid, "size": size, "stride": size, "target": target,
            "unoccluded": {"prob": 0.9, "top_class": predicted}}


def _imagenet_root(root, solution: str | None = None, n=4, size=(64, 64)):
    """A flat-val ImageNet root (train/n1, train/n2; val/ILSVRC2012_val_0000000<i>.JPEG) with ``solution``
    as its LOC_val_solution.csv."""
    from PIL import Image

    for wnid in ("n1", "n2"):
        (root / "train" / wnid).mkdir(parents=True)
    (root / "val").mkdir()
    paths = [root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, n + 1)]
    for p in paths:
        Image.new("RGB", size).save(p)
    if solution is not None:
        (root / "LOC_val_solution.csv").write_text(solution)
    return [str(p) for p in paths]


def _boxes_cfg(root, **data):
    return OmegaConf.create({"data": {"imagenet_root": str(root), "val_boxes": None, "resize": 64, "crop": 64, **data},
                             "prepare": {"out_dir": str(root / "no-prepared")}})


@pytest.fixture
def boxes_cfg(tmp_path):
    """A flat val folder of 64x64 images (input = image: resize = crop = 64) with Kaggle's LOC_val_solution.csv,
    each box x, y in [0, 31] of class n1 (label 0): the square's centres 4, 12, ..., 60 fall inside for 4 of 8
    positions per axis, a chance of 1/4."""
    rows = [f"ILSVRC2012_val_{i:08d},n1 0 0 31 {31 if i < 4 else 63}" for i in range(1, 5)]
    paths = _imagenet_root(tmp_path / "inet", "ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    return _boxes_cfg(tmp_path / "inet"), paths


def test_occlusion_inside_the_box_against_chance(boxes_cfg):
    cfg, paths = boxes_cfg
    maps = [_maps((1, 1), 0, 0),   # correct, minimum at centre (12, 12): inside
            _maps((7, 7), 0, 0),   # correct, minimum at (60, 60): outside
            _maps((0, 0), 0, 3)]   # misclassified: not counted
    got = occlusion_vs_boxes(cfg, maps, paths[:3], note="first 2 correct")
    rows, s = got["images"], got["summary"]
    assert [(r["inside"], r["chance"], r["correct"], r["label"], r["predicted"]) for r in rows] == [
        (True, 0.25, True, 0, 0), (False, 0.25, True, 0, 0), (True, 0.25, False, 0, 3)]
    from scipy.stats import binom

    assert (s["inside"], s["out_of"], s["counted"], s["expected_inside"]) == (1, 2, "correctly classified", 0.5)
    assert s["p_value"] == pytest.approx(binom.sf(0, 2, 0.25), abs=1e-4)  # P(X >= 1) = 1 - 0.75^2
    assert s["note"] == "first 2 correct"


def test_occlusion_p_value_with_unequal_chances_and_none_correct(boxes_cfg):
    cfg, paths = boxes_cfg
    maps = [_maps((1, 1), 0, 5), _maps((2, 2), 0, 5), _maps((1, 1), 0, 5), _maps((7, 1), 0, 5)]  # all wrong
    s = occlusion_vs_boxes(cfg, maps, paths)["summary"]
    chances = [0.25, 0.25, 0.25, 0.5]  # the last box spans the whole height
    brute = sum(np.prod([c if hit else 1 - c for c, hit in zip(chances, hits)])
                for hits in itertools.product([0, 1], repeat=4) if sum(hits) >= 4)
    assert (s["counted"], s["inside"], s["out_of"]) == ("all (none classified correctly)", 4, 4)
    assert s["p_value"] == pytest.approx(brute, abs=1e-4) and s["expected_inside"] == 1.25


def test_no_ground_truth_no_box_statistic(tmp_path):
    paths = _imagenet_root(tmp_path / "inet")  # labels from val class folders, say: no box file anywhere
    assert occlusion_vs_boxes(_boxes_cfg(tmp_path / "inet"), [_maps((0, 0), 0, 0)], paths[:1]) == {}


def test_several_boxes_only_the_true_class_counts(tmp_path):
    """One image 128 wide, 64 high: resize 64 keeps it, the centre crop is x in [32, 96). Boxes of n1 (label 0):
    x 32..63 and 64..95, y 0..15 -> input x [0, 32) and [32, 64), y [0, 16); n2's box (the whole image, input
    x [-32, 96)) does not count for n1."""
    solution = "ImageId,PredictionString\nILSVRC2012_val_00000001,n1 32 0 63 15 n2 0 0 127 63 n1 64 0 95 15\n"
    paths = _imagenet_root(tmp_path / "inet", solution, n=1, size=(128, 64))
    cfg = _boxes_cfg(tmp_path / "inet")
    # centres 4, 12, ..., 60: every x is in one of the two boxes, y in [0, 16) for 2 of 8: chance 1/4
    got = occlusion_vs_boxes(cfg, [_maps((1, 6), 0, 0)], paths)["images"][0]  # minimum at x 52, y 12
    assert got["inside"] is True and got["chance"] == 0.25
    assert got["boxes"] == [[0.0, 0.0, 32.0, 16.0], [32.0, 0.0, 64.0, 16.0]] and got["box"] == [32.0, 0.0, 64.0, 16.0]
    assert occlusion_vs_boxes(cfg, [_maps((3, 6), 0, 0)], paths)["images"][0]["inside"] is False  # y 28: only n2's
    got = occlusion_vs_boxes(cfg, [_maps((3, 6), 1, 1)], paths)["images"][0]  # true class n2: its box, everywhere
    assert (got["inside"], got["chance"], got["boxes"]) == (True, 1.0, [[-32.0, 0.0, 96.0, 64.0]])


def test_box_xmls_where_config_points(tmp_path):
    """data.val_boxes: a folder of bounding-box XMLs (sizes from the XML, not the image file)."""
    paths = _imagenet_root(tmp_path / "inet", n=1, size=(64, 64))
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "ILSVRC2012_val_00000001.xml").write_text(
        "<annotation><size><width>128</width><height>128</height></size><object><name>n1</name>"
        "<bndbox><xmin>0</xmin><ymin>0</ymin><xmax>63</xmax><ymax>63</ymax></bndbox></object></annotation>")
    got = occlusion_vs_boxes(_boxes_cfg(tmp_path / "inet", val_boxes=str(tmp_path / "xml")), [_maps((1, 1), 0, 0)], paths)
    assert got["images"][0]["boxes"] == [[0.0, 0.0, 32.0, 32.0]] and got["images"][0]["chance"] == 0.25


@pytest.mark.usefixtures("one_thread")
def test_occlusion_images_are_those_the_model_classifies_correctly(tmp_path):
    """A model that always answers "dog": the occlusion figures are of the dog images only, as many as
    there are when fewer than configured."""
    from zfnet.stages.visualize.parts import run

    photo_folder(tmp_path, 2, (40, 40))
    weights = tmp_path / "dog.pt"
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=2)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 5.0]))
    torch.save(model.state_dict(), weights)
    cfg = user_model_config(
        tmp_path, 36, 32, images=4, deconv={"maps_per_layer": 1, "k": 1},
        occlusion={"images": 3, "size": 16, "stride": 16}, invariance={"images": 1},
        weights=str(weights), layers=["layer1", "layer2"])
    figures = run(cfg)
    assert sorted(Path(p).name for p in figures["occlusion"]) == ["occlusion_002.png", "occlusion_003.png"]


def test_the_occlusion_page_states_the_count_against_chance():
    from zfnet.stages.visualize.occlusion import occlusion_text

    rows = [{"inside": True, "chance": 0.81, "min_prob": 0.2, "unoccluded_prob": 0.9}] * 3
    summary = {"inside": 3, "out_of": 3, "counted": "correctly classified", "mean_chance": 0.81,
               "expected_inside": 2.43, "p_value": 0.531, "note": "only 3 of 64 images searched are classified correctly"}
    text = occlusion_text({"images": rows, "summary": summary})
    assert ("inside the object's box for 3 of 3 correctly classified images; a random position would fall inside "
            "with probability 0.81 on average (expected 2.4 of 3; p = 0.53") in text
    assert "not distinguishable from chance" in text and "only 3 of 64" in text and "at most" not in text
