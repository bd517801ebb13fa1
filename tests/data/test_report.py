"""report.html tells the truth (issue 15 item 3): boxes where the tools cropped, on the picture shown; each view
captioned; failed calls with their reason; every turn, the tools' responses included; the sample shown named when
several were read out; scores rounded. No browser on this machine: the HTML is checked structurally (stdlib parser)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tooliqa_data.records import PredictionRow
from tooliqa_data.report import view_path, write_report

VOID = {"meta", "img", "br", "hr", "input", "link"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def _images(document: str) -> list[np.ndarray]:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', document)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")) for uri in uris]


def _write_report(tmp_path):
    image = tmp_path / "wide.png"
    Image.fromarray(np.full((400, 1000, 3), 128, dtype=np.uint8)).save(image)  # grey: any red is the outline
    key = ("set", str(image))
    view = view_path(tmp_path, *key, 1)
    view.parent.mkdir()
    Image.fromarray(np.zeros((64, 128, 3), dtype=np.uint8)).save(view)
    calls = [
        {"name": "magnifier", "arguments_json": '{"bbox_2d": [600, 0, 1000, 500]}', "ok": True,
         "box": [600, 0, 1000, 200], "gamma": None, "error": None},
        {"name": "gamma_corrector", "arguments_json": '{"mode": "sideways"}', "ok": False, "box": None,
         "gamma": None, "error": "mode must be one of brighten, darken"},
    ]  # fmt: skip
    turns = [
        {"kind": "rubric", "text": "<answer>Sharpness: High</answer>", "view": None},
        {"kind": "action", "text": '<tool_call>{"name": "magnifier"}</tool_call>', "view": view.relative_to(tmp_path).as_posix()},
        {"kind": "action", "text": '<tool_call>{"name": "gamma_corrector"}</tool_call>', "view": None},
        {"kind": "final", "text": "<answer>4</answer>", "view": None},
    ]  # fmt: skip
    row = PredictionRow("set", str(image), 3.3333333, 3.6666666666666665, "ok", n_tool_calls=2, n_failed_calls=1)
    record = {"dataset": "set", "image": str(image), "tool_calls": calls, "turns": turns}
    (tmp_path / "trajectories.jsonl").write_text(json.dumps({**record, "prediction": dataclasses.asdict(row)}) + "\n")
    summary = SimpleNamespace(name="set", n_rows=1, metrics=None, note="")
    write_report(tmp_path / "report.html", tmp_path, [row], [summary], {key}, "t", samples=4)
    return tmp_path / "report.html"


def test_report_draws_boxes_where_the_tools_cropped_and_shows_every_turn(tmp_path):
    document = _write_report(tmp_path).read_text()

    balance = _Balance()
    balance.feed(document)
    assert balance.stack == [], balance.stack  # every element closed
    original = _images(document)[0]
    red = (original[..., 0] > 200) & (original[..., 1] < 60) & (original[..., 2] < 60)
    ys, xs = np.nonzero(red)
    width, height = original.shape[1], original.shape[0]
    # the box [600, 0, 1000, 200] of a 1000 × 400 original: the right 40 % of the top half of the picture shown
    assert xs.min() >= 0.59 * width and xs.max() >= 0.98 * width and ys.max() <= 0.51 * height, (xs, ys)
    assert "original as assessed (1000×400 px), magnifier boxes 1–1" in document
    caption = "bbox_2d as the model wrote it [600, 0, 1000, 500] · in the original's pixels [600, 0, 1000, 200]"
    assert f"magnifier (box 1 on the original) · {caption}" in document
    assert "gamma_corrector failed: mode must be one of brighten, darken" in document
    assert document.count("<b>tool response</b>") == 2 and document.count("<b>model · ") == 4
    assert "sample 1 of 4 (its own answer: 4)" in document
    assert "score 3.667" in document and "3.6666" not in document and "MOS 3.333" in document


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium here (Debian: apt install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    """The report as a browser draws it: the page renders (a screenshot), the red box and the dark tool view are on
    it, and what the browser's DOM holds is the same document (every turn, the captions)."""
    report = _write_report(tmp_path)
    shot = tmp_path / "shot.png"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2000"]
    subprocess.run([*command, f"--screenshot={shot}", report.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 100  # the magnifier's box outline, drawn on the original shown
    assert ((pixels.sum(-1) < 30).sum()) > 64 * 64  # the (black) tool view is on the page
    dom = subprocess.run([*command, "--dump-dom", report.as_uri()], check=True, capture_output=True, timeout=120)
    text = dom.stdout.decode()
    assert text.count("<b>tool response</b>") == 2 and "gamma_corrector failed: mode must be one of" in text
