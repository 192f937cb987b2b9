"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

A person's flow: open an image, click three times where the RITM click simulator would, check
the mask the page holds and draws equals the API's for the same clicks, undo/redo by keyboard,
accept with the button, check the files. Runs on a synthetic image always and on a real MVTec
bottle image (900x900) when ../shared/data is present. Screenshots go to runs/test_artifacts/.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adinspect.imageio import decode_mask, read_image, read_mask
from adinspect.runtime.clicks import Click, scale_clicks
from adinspect.train.clicks import next_click

from .conftest import request

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "runs" / "test_artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
]  # fmt: skip


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[object]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(
            "chromium or chromedriver absent: run .ci/install_browser.sh (Debian chromium, chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


def _wait(browser, script: str, timeout: float = 60) -> object:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))


def _api_mask(url: str, image_id: int, defect_type: str, clicks: list[dict], resolution: str) -> np.ndarray:
    if not clicks:
        return np.zeros((0, 0), bool)
    body = {"image": image_id, "defect_type": defect_type, "clicks": clicks, "resolution": resolution}
    status, seg = request(f"{url}/api/segment", body)
    assert status == 200, seg
    return decode_mask(base64.b64decode(seg["mask"].split(",", 1)[1]))  # type: ignore[index]


def _page_mask(browser) -> np.ndarray:  # type: ignore[no-untyped-def]
    data_url = browser.execute_script("return window.adinspect.maskDataURL()")
    return decode_mask(base64.b64decode(data_url.split(",", 1)[1]))


def _click_at(browser, x: int, y: int, positive: bool) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "canvas")
    target = browser.execute_script("return window.adinspect.imageToClient(arguments[0], arguments[1])", x, y)
    rect = browser.execute_script("return arguments[0].getBoundingClientRect().toJSON()", canvas)
    dx = round(target["x"] - (rect["left"] + rect["width"] / 2))
    dy = round(target["y"] - (rect["top"] + rect["height"] / 2))
    chain = ActionChains(browser).move_to_element_with_offset(canvas, dx, dy)
    (chain.click() if positive else chain.context_click()).perform()


def label_three_clicks(browser, url: str, labels: Path, image_id: int, gt: np.ndarray, defect_type: str,  # type: ignore[no-untyped-def]
                       shot: str) -> None:  # fmt: skip
    """The person's flow on one image (gt: the ground truth at S x S, S = gt.shape[0])."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    size = gt.shape[0]
    browser.get(url + "/")
    _wait(
        browser, "return window.adinspect && window.adinspect.idle() && window.adinspect.state.img !== null"
    )
    browser.execute_script("return window.adinspect.openImage(arguments[0])", image_id)
    _wait(browser, "return window.adinspect.idle()")
    h, w = browser.execute_script("const s = window.adinspect.state; return [s.h, s.w]")
    browser.execute_script("document.getElementById('defect-type').value = arguments[0]", defect_type)
    pred, clicked, simulated = np.zeros_like(gt), np.zeros_like(gt), []
    for k in range(1, 4):
        c = next_click(gt, pred, clicked)
        assert c is not None
        clicked[c.y, c.x] = True
        simulated.append(c)
        x, y = min(w - 1, int((c.x + 0.5) * w / size)), min(h - 1, int((c.y + 0.5) * h / size))
        _click_at(browser, x, y, c.positive)
        _wait(browser, f"return window.adinspect.state.clicks.length === {k} && window.adinspect.idle()")
        page_clicks = browser.execute_script("return window.adinspect.state.clicks")
        pred = _api_mask(url, image_id, defect_type, page_clicks, "model")
    # the clicks landed on the simulator's model pixels, and the page holds the API's mask
    page_clicks = browser.execute_script("return window.adinspect.state.clicks")
    assert (
        scale_clicks([Click(p["y"], p["x"], p["positive"]) for p in page_clicks], (h, w), size) == simulated
    )
    api_mask = _api_mask(url, image_id, defect_type, page_clicks, "original")
    assert api_mask.shape == (h, w) and np.array_equal(_page_mask(browser), api_mask)
    drawn_area = browser.execute_script("return window.adinspect.state.area")
    assert drawn_area == int(api_mask.sum())

    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("u")  # undo the third click, redo it
    _wait(browser, "return window.adinspect.state.clicks.length === 2 && window.adinspect.idle()")
    assert np.array_equal(
        _page_mask(browser), _api_mask(url, image_id, defect_type, page_clicks[:2], "original")
    )
    body.send_keys("y")
    _wait(browser, "return window.adinspect.state.clicks.length === 3 && window.adinspect.idle()")
    assert np.array_equal(_page_mask(browser), api_mask)
    body.send_keys("h")  # heat map on, for the screenshot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"annotate_{shot}.png"))
    body.send_keys(Keys.ENTER)  # accept
    _wait(browser, "return window.adinspect.idle() && window.adinspect.state.list.progress.accepted === 1")

    saved = json.loads((labels / "annotations.json").read_text())["images"]
    (decision,) = saved.values()
    assert decision["state"] == "accepted" and decision["clicks"] == page_clicks
    assert np.array_equal(read_mask(labels / decision["mask"]), api_mask)
    entries = json.loads((labels / "clicks.json").read_text())["images"]
    assert [e["clicks"] for e in entries] == [page_clicks]
    assert "1 labelled" in browser.find_element(By.ID, "progress").text


def _gt_at(mask_path: Path, size: int) -> np.ndarray:
    import cv2

    return (
        cv2.resize(read_mask(mask_path).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    )


def test_page_on_a_synthetic_image(driver, click_package: Path, synthetic_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    annotator = Annotator(click_package, synthetic_root, tmp_path / "labels")
    item = next(it for it in annotator.queue if it.folder_type == "spot")
    gt = _gt_at(synthetic_root / "ground_truth" / "spot" / f"{item.path.stem}_mask.png", 256)
    with ServerThread(annotator) as url:
        label_three_clicks(driver, url, tmp_path / "labels", item.id, gt, "spot", "synthetic")


@pytest.mark.real_data
def test_page_on_a_real_bottle_image(driver, click_package: Path, bottle_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 900x900 MVTec bottle image (a plain folder holding it), with the synthetic package's tiny
    click model: the check is that the page's clicks and masks are the API's at full size."""
    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    folder = tmp_path / "bottle_images"
    folder.mkdir()
    shutil.copy(bottle_root / "test" / "broken_large" / "000.png", folder / "broken_large_000.png")
    assert read_image(folder / "broken_large_000.png").shape[:2] == (900, 900)
    gt = _gt_at(bottle_root / "ground_truth" / "broken_large" / "000_mask.png", 256)
    with ServerThread(Annotator(click_package, folder, tmp_path / "labels")) as url:
        label_three_clicks(driver, url, tmp_path / "labels", 0, gt, "crack", "bottle")


def test_train_button_shows_progress_and_a_failure(  # type: ignore[no-untyped-def]
    driver, click_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """Train with an accepted image deleted since: the page shows the running step, then the
    failure and the command's error line; the button is usable again."""
    from selenium.webdriver.common.by import By

    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    from .test_train import accept_simulated

    data = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    with ServerThread(Annotator(click_package, data, tmp_path / "labels")) as url:
        (gone, *_) = accept_simulated(url, data)
        (data / gone).unlink()
        driver.get(url + "/")
        _wait(
            driver,
            "return window.adinspect && window.adinspect.idle() && window.adinspect.state.img !== null",
        )
        driver.execute_script(  # every text the status line shows, in order
            "window.trainSeen = []; const el = document.getElementById('train-status');"
            "new MutationObserver(() => window.trainSeen.push(el.textContent))"
            ".observe(el, {childList: true, characterData: true, subtree: true});"
        )
        driver.find_element(By.ID, "train").click()
        _wait(
            driver, "return document.getElementById('train-status').dataset.state === 'failed'", timeout=120
        )
        seen = driver.execute_script("return window.trainSeen")
        error = driver.find_element(By.ID, "error").text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "annotate_train_failed.png"))
        assert seen[0].startswith("running: step 1/2 label"), seen
        assert seen[-1].startswith("failed: step 1/2 label") and "error:" in seen[-1], seen
        assert error.startswith("training failed in label (exit 2): error:") and "no file" in error, error
        assert str((tmp_path / "labels" / "train.log").resolve()) in error
        assert driver.find_element(By.ID, "train").is_enabled()
