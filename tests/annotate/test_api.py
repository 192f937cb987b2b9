"""The annotate HTTP API against a real package with a (tiny) trained click model."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from adinspect.imageio import decode_mask, encode_png, read_mask

from .conftest import request

CLICKS = [{"x": 120, "y": 100, "positive": True}, {"x": 30, "y": 40, "positive": False}]


def _mask(url: str) -> np.ndarray:
    return decode_mask(base64.b64decode(url.split(",", 1)[1]))


def _png_url(mask: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(mask.astype(np.uint8) * 255)).decode()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock")


def test_queue_lists_the_defective_images_with_progress(server: str, synthetic_root: Path) -> None:
    status, listing = request(f"{server}/api/images")
    assert status == 200 and isinstance(listing, dict)
    names = [i["name"] for i in listing["images"]]
    expected = sorted(p.relative_to(synthetic_root).as_posix() for p in synthetic_root.glob("test/*/*.png")
                      if p.parent.name != "good")  # fmt: skip
    assert sorted(names) == expected
    assert listing["progress"] == {"accepted": 0, "no_defect": 0, "skipped": 0, "todo": len(expected)}
    assert listing["defect_types"] == ["crack", "scratch", "spot"] and listing["click_model"]
    assert listing["snap"] is False and listing["trace"] is False  # the fixture: `--snap off --trace off`
    status, info = request(f"{server}/api/images/0")
    assert status == 200 and isinstance(info, dict) and (info["width"], info["height"]) == (256, 256)
    status, png = request(server + info["heatmap_url"])
    assert status == 200 and isinstance(png, bytes) and png[:4] == b"\x89PNG"


def test_segment_equals_the_click_runtime(server: str, click_package: Path, synthetic_root: Path) -> None:
    from adinspect.imageio import read_image
    from adinspect.runtime.click import ClickRuntime
    from adinspect.runtime.clicks import Click

    _, listing = request(f"{server}/api/images")
    item = listing["images"][3]  # type: ignore[index]
    body = {"image": item["id"], "defect_type": "spot", "clicks": CLICKS}
    status, seg = request(f"{server}/api/segment", body)
    assert status == 200 and isinstance(seg, dict)
    session = ClickRuntime(click_package).open(read_image(synthetic_root / item["name"]))
    prob = session.probability([Click(c["y"], c["x"], c["positive"]) for c in CLICKS], "spot")
    expected = session.mask(prob)
    got = _mask(seg["mask"])
    assert got.shape == (256, 256) and seg["area"] == int(expected.sum())
    assert np.array_equal(got, expected)


def test_bad_requests_get_a_4xx_message_and_write_nothing(server: str, labels_dir: Path) -> None:
    before = _files(labels_dir)
    ok = {"image": 0, "defect_type": "spot", "clicks": CLICKS}
    cases = [
        ({**ok, "image": 9999}, 404, "unknown image id"),
        ({**ok, "clicks": [{"x": 256, "y": 3, "positive": True}]}, 422, "outside the 256x256 image"),
        ({**ok, "clicks": [{"x": -1, "y": 3, "positive": True}]}, 422, "outside"),
        ({**ok, "defect_type": "dent"}, 422, "unknown defect type 'dent'"),
        ({**ok, "clicks": []}, 400, "clicks"),
        ({**ok, "clicks": [{"x": 1.5, "y": 3, "positive": True}]}, 400, "clicks.0.x"),
        ({**ok, "clicks": [{"x": 1, "y": 3}]}, 400, "clicks.0.positive"),
        ({"image": 0, "clicks": CLICKS}, 400, "defect_type"),
        ({**ok, "extra": 1}, 400, "extra"),
        ({**ok, "image": "0"}, 400, "image"),
        ([1, 2], 400, "body"),
    ]
    for path in ("segment", "accept"):
        for body, code, message in cases:
            status, answer = request(f"{server}/api/{path}", body)
            assert status == code and isinstance(answer, dict) and message in answer["error"], (
                path,
                body,
                answer,
            )
    status, answer = request(f"{server}/api/accept", raw=b"{not json")
    assert status == 400 and "malformed JSON" in answer["error"]  # type: ignore[index]
    status, answer = request(f"{server}/api/accept", raw=json.dumps(ok).encode(), content_type="text/plain")
    assert status == 415
    status, answer = request(f"{server}/api/accept", {**ok, "mask": "data:image/png;base64,AAAA"})
    assert status == 422, answer
    status, answer = request(f"{server}/api/accept", {**ok, "mask": _png_url(np.ones((10, 10), bool))})
    assert status == 422 and "mask is 10x10" in answer["error"]  # type: ignore[index]
    status, answer = request(f"{server}/api/accept", {**ok, "mask": _png_url(np.zeros((256, 256), bool))})
    assert status == 422 and "the mask is empty (0 defect pixels)" in answer["error"]  # type: ignore[index]
    status, answer = request(f"{server}/api/skip", {"image": -1})
    assert status == 404
    assert _files(labels_dir) == before


@pytest.mark.parametrize(
    "path",
    ["/api/images/..%2F..%2F..%2Fetc%2Fpasswd", "/api/images/%2Fetc%2Fpasswd", "/api/images/-1",
     "/api/images/0/..%2F..%2Fpyproject.toml", "/static/../pyproject.toml", "/static/..%2F..%2Fcli.py",
     "/static/%2Fetc%2Fpasswd", "/api/images/0/secret.png", "/../../etc/passwd"],
)  # fmt: skip
def test_only_the_datasets_images_and_the_page_are_served(server: str, path: str) -> None:
    parts = urlparse(server)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", path)  # sent as is: no client-side normalisation of '..'
    response = conn.getresponse()
    body = response.read()
    assert response.status == 404, (path, response.status, body[:200])
    assert b"root:" not in body and b"[project]" not in body


def test_other_host_headers_are_refused(server: str) -> None:
    status, _ = request(f"{server}/api/images", headers={"Host": "attacker.example:8765"})
    assert status == 400


def test_accept_writes_mvtec_mask_and_a_click_file_label_reads(
    server: str, labels_dir: Path, synthetic_root: Path, click_package: Path
) -> None:
    from adinspect.runtime.clicks import Click, scale_clicks
    from adinspect.train.labeling import parse_click_file

    _, listing = request(f"{server}/api/images")
    item = listing["images"][1]  # type: ignore[index]
    body = {"image": item["id"], "defect_type": "scratch", "clicks": CLICKS}
    _, seg = request(f"{server}/api/segment", body)
    status, decision = request(f"{server}/api/accept", body)
    assert status == 200 and decision["state"] == "accepted"  # type: ignore[index]
    stem = Path(item["name"]).stem
    mask_file = labels_dir / "ground_truth" / "scratch" / f"{stem}_mask.png"
    assert np.array_equal(read_mask(mask_file), _mask(seg["mask"]))  # type: ignore[index]

    parsed = parse_click_file(labels_dir / "clicks.json", synthetic_root, ["crack", "scratch", "spot"], 256)
    assert [r.path.resolve() for r in parsed] == [(synthetic_root / item["name"]).resolve()]
    original = [Click(c["y"], c["x"], c["positive"]) for c in CLICKS]
    assert parsed[0].original == original and parsed[0].scaled == scale_clicks(original, (256, 256), 256)

    # brush edits: the page's mask is saved as given; a second accept replaces the first
    edited = _mask(seg["mask"]).copy()  # type: ignore[index]
    edited[:20, :20] = True
    status, decision = request(
        f"{server}/api/accept", {**body, "defect_type": "spot", "mask": _png_url(edited)}
    )
    assert status == 200 and decision["area"] == int(edited.sum())  # type: ignore[index]
    assert not mask_file.exists()
    assert np.array_equal(read_mask(labels_dir / "ground_truth" / "spot" / f"{stem}_mask.png"), edited)

    status, _ = request(f"{server}/api/no_defect", {"image": item["id"]})
    assert status == 200 and not list((labels_dir / "ground_truth").rglob("*.png"))
    assert json.loads((labels_dir / "clicks.json").read_text()) == {"images": []}
    _, listing = request(f"{server}/api/images")
    assert listing["progress"]["no_defect"] == 1  # type: ignore[index]


def test_concurrent_tabs_lose_nothing_and_reopening_resumes(
    server: str, labels_dir: Path, click_package: Path, synthetic_root: Path
) -> None:
    from adinspect.annotate.service import Annotator

    def accept(image_id: int) -> None:
        body = {
            "image": image_id,
            "defect_type": "crack",
            "clicks": [{"x": 10 + image_id, "y": 50, "positive": True}],
        }
        assert request(f"{server}/api/accept", body)[0] == 200

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=lambda: request(f"{server}/api/skip", {"image": 4}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = json.loads((labels_dir / "annotations.json").read_text())["images"]
    assert sorted(d["state"] for d in saved.values()) == ["accepted"] * 4 + ["skipped"]
    assert len(json.loads((labels_dir / "clicks.json").read_text())["images"]) == 4
    assert not list(labels_dir.glob(".*.tmp"))

    listing = Annotator(click_package, synthetic_root, labels_dir).listing()  # a new server, same labels
    assert listing["resume"] == 5
    assert listing["progress"] == {
        "accepted": 4,
        "no_defect": 0,
        "skipped": 1,
        "todo": len(listing["images"]) - 5,
    }


def test_a_package_without_click_model_serves_heat_maps_and_says_why_it_cannot_click(
    fitted_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    with ServerThread(Annotator(fitted_package, synthetic_root, tmp_path / "labels")) as url:
        _, listing = request(f"{url}/api/images")
        assert listing["click_model"] is False  # type: ignore[index]
        assert request(f"{url}/api/images/0/heatmap.png")[0] == 200
        status, answer = request(f"{url}/api/segment", {"image": 0, "defect_type": "spot", "clicks": CLICKS})
    assert status == 409 and "adinspect train-click" in answer["error"]  # type: ignore[index]


def test_the_store_refuses_an_empty_defect_label(tmp_path: Path, synthetic_root: Path) -> None:
    from adinspect.annotate.queue import build_queue
    from adinspect.annotate.store import LabelStore
    from adinspect.errors import InputError

    item = build_queue(synthetic_root)[0]
    with pytest.raises(InputError, match="the mask is empty"):
        LabelStore(tmp_path / "labels", synthetic_root).accept(item, "crack", [], np.zeros((256, 256), bool))
    assert not list((tmp_path / "labels").rglob("*.png"))
