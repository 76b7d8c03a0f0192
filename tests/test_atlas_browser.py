"""The atlas explorer in Debian's headless chromium, opened from disk (file://): every image on every page
decodes, every link lands on a file, the layer page's sort buttons order the cards as the data says
(descending, units without the value last, ties in channel order), its filters show exactly the units of
the chosen concept / top class, and without JavaScript every unit shows in channel order. Screenshots are
kept under the test's tmp_path (their paths printed)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from browser import check_report, chromium, load_images, screenshot
from helpers import ATLAS_MARKUP_CLASS, fake_atlas
from zfnet.atlas.explorer import SORTS, write_explorer

_LOADED = "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
_ORDER = "return Array.from(document.querySelectorAll('#units .card')).map(c => +c.getAttribute('data-unit'))"


def _shown(driver) -> list[int]:
    from selenium.webdriver.common.by import By

    return [int(c.get_attribute("data-unit")) for c in driver.find_elements(By.CSS_SELECTOR, "#units .card")
            if c.is_displayed()]


def _sorted(units: list[dict], key: str) -> list[int]:
    """Descending by ``key``, units without it last, ties in channel order (Python's sort is stable)."""
    return [u["unit"] for u in sorted(units, key=lambda u: (u[key] is None, -(u[key] or 0.0)))]


def test_thumbnails_load_lazily_and_all_decode(tmp_path):
    """A layer of 400 units (ZFNet's widest has 384): the thumbnails far below the fold wait until needed, and
    every one decodes once loaded (``load_images``: what ``check_report`` does on every page)."""
    atlas = fake_atlas(tmp_path / "reports")
    units = json.loads((atlas / "data/conv1.json").read_text())["units"]
    wide = [dict(units[n % len(units)], unit=n) for n in range(400)]  # the same image files, many times
    (atlas / "data/wide.json").write_text(json.dumps({"layer": "wide", "units": wide}))
    meta = json.loads((atlas / "data/atlas.json").read_text())
    meta["layers"].append({"name": "wide", "units": len(wide), "file": "data/wide.json"})
    (atlas / "data/atlas.json").write_text(json.dumps(meta))
    write_explorer(atlas)
    with chromium() as driver:
        driver.get((atlas / "wide.html").resolve().as_uri())
        assert 0 < driver.execute_script(_LOADED) < len(wide), "the thumbnails far below the fold wait"
        load_images(driver)
        assert driver.execute_script(_LOADED) == len(wide)


def test_atlas_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    atlas = fake_atlas(tmp_path / "reports")
    pages = write_explorer(atlas)
    check = check_report(atlas / "index.html", tmp_path / "atlas_index.png")
    print(f"\nscreenshots of the atlas: {tmp_path}")
    assert not check.problems, "\n".join(check.problems)
    assert set(pages) <= set(check.pages), "every page reached by following links from the index"
    layer_page = (atlas / "conv1.html").resolve()
    units = json.loads((atlas / "data/conv1.json").read_text())["units"]
    assert len(check.images[layer_page]) == len(units) and all(i["width"] > 0 for i in check.images[layer_page])

    with chromium() as driver:
        driver.get(layer_page.as_uri())
        assert driver.find_element(By.ID, "controls").is_displayed()
        assert driver.execute_script(_ORDER) == _shown(driver) == [u["unit"] for u in units]
        for key, _ in SORTS:
            driver.find_element(By.CSS_SELECTOR, f'button[data-sort="{key}"]').click()
            assert _shown(driver) == _sorted(units, key), key
            pressed = driver.find_elements(By.CSS_SELECTOR, 'button[aria-pressed="true"]')
            assert [b.get_attribute("data-sort") for b in pressed] == [key]
        driver.find_element(By.CSS_SELECTOR, 'button[data-sort="mean"]').click()
        load_images(driver)
        screenshot(driver, tmp_path / "atlas_conv1_by_mean.png")

        concept, top_class = Select(driver.find_element(By.ID, "concept")), Select(driver.find_element(By.ID, "top_class"))
        by_mean = _sorted(units, "mean")
        concept.select_by_value("=red")
        assert _shown(driver) == [n for n in by_mean if units[n]["concept"] == "red"] and len(_shown(driver)) == 2
        shown_text = driver.find_element(By.ID, "shown").text
        assert shown_text == f"2 of {len(units)} units"
        concept.select_by_value("-")
        assert _shown(driver) == [n for n in by_mean if units[n]["concept"] is None]
        concept.select_by_value("*")
        top_class.select_by_value(f"={ATLAS_MARKUP_CLASS}")
        assert _shown(driver) == [n for n in by_mean if units[n]["top_class"] == ATLAS_MARKUP_CLASS] and _shown(driver)
        concept.select_by_value("=red")
        assert _shown(driver) == [n for n in by_mean if units[n]["concept"] == "red"
                                  and units[n]["top_class"] == ATLAS_MARKUP_CLASS] == []
        top_class.select_by_value("=n02102040")
        expected = [n for n in by_mean if units[n]["concept"] == "red" and units[n]["top_class"] == "n02102040"]
        assert _shown(driver) == expected == [5]
        driver.find_element(By.CSS_SELECTOR, 'button[data-sort="unit"]').click()
        assert driver.execute_script(_ORDER) == [u["unit"] for u in units] and _shown(driver) == [5]  # filter kept
        screenshot(driver, tmp_path / "atlas_conv1_filtered.png")

        driver.get((atlas / "units/conv1/4.html").resolve().as_uri())
        screenshot(driver, tmp_path / "atlas_conv1_unit4.png")
        driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
        assert driver.current_url.endswith("/units/conv1/5.html") and driver.title == "conv1 unit 5"

        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        driver.get(layer_page.as_uri())
        assert not driver.find_element(By.ID, "controls").is_displayed()
        assert _shown(driver) == [u["unit"] for u in units]  # every unit, channel order
        screenshot(driver, tmp_path / "atlas_conv1_no_js.png")

    for name in ("atlas_index", "atlas_conv1_by_mean", "atlas_conv1_filtered", "atlas_conv1_unit4", "atlas_conv1_no_js"):
        picture = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L"))
        assert picture.shape[1] >= 1000 and picture.std() > 10, name  # a page, not blank
