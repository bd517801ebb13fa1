"""A self-contained HTML report: for sampled images, the original with the magnifier boxes drawn, every tool view and
the model's text per turn with each tool's response (its view captioned with the tool, the box and γ, or the
reason it failed). Images are embedded as base64 PNG, so the one file can be mailed or attached to an issue.

Which images are shown is decided before the run (:func:`report_keys`: a seeded hash of dataset and image, so the
choice does not depend on order or on resumption), and the runner saves tool views only for those.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from tooliqa_data.images import ImageError, load_pil
from tooliqa_data.items import Dataset
from tooliqa_data.records import PredictionRow, read_trajectories
from tooliqa_data.summary import DatasetSummary
from tooliqa_data.tables import fmt

ASSETS = "report_assets"
"""Folder (inside the output folder) holding the tool views of the sampled images."""
_THUMB = 384


def report_keys(datasets: Sequence[Dataset], samples: int, seed: int) -> set[tuple[str, str]]:
    """``(dataset, image)`` keys of the images the report shows: per dataset the ``samples`` smallest seeded hashes."""
    keys: set[tuple[str, str]] = set()
    for dataset in datasets:
        names = [str(item.image) for item in dataset.items] + [str(p.item.image) for p in dataset.problems if p.item]
        ranked = sorted(names, key=lambda name: hashlib.sha1(f"{seed}|{dataset.name}|{name}".encode()).hexdigest())
        keys.update((dataset.name, name) for name in ranked[:samples])
    return keys


def view_path(out_dir: Path, dataset: str, image: str, turn: int) -> Path:
    """Where the tool view shown in ``turn`` of an image is saved."""
    digest = hashlib.sha1(f"{dataset}|{image}".encode()).hexdigest()[:16]
    return out_dir / ASSETS / f"{digest}_{turn}.png"


def _displayed(image: Image.Image) -> Image.Image:
    """The picture as the report shows it: at most ``_THUMB`` px, small images enlarged with visible pixels."""
    image = image.copy()
    image.thumbnail((_THUMB, _THUMB))
    factor = -(-_THUMB // 2 // max(image.size))  # ceil: at least half the thumbnail size
    if factor > 1:  # small images (e.g. the 96-160 px synthetic set) are enlarged with visible pixels, not smoothed
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return image


def _encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _original(image: str, boxes: list[list[int]], max_side: int | None) -> tuple[str, str]:
    """The original as assessed (the runner's decode: same ``max_side``), its boxes numbered, and its size."""
    try:
        picture = load_pil(image, min_side=1, max_side=max_side)
    except ImageError as exc:
        return f"<p class=err>{html.escape(str(exc))}</p>", ""
    size = f"{picture.width}×{picture.height} px"
    shown = _displayed(picture)
    # The boxes are in the assessed original's pixels (the tools crop that image); the picture shown is scaled, so
    # each box is scaled with it — drawn at full size and then shrunk, a thin outline would vanish.
    scale_x, scale_y = shown.width / picture.width, shown.height / picture.height
    draw = ImageDraw.Draw(shown)
    width = max(2, max(shown.size) // 150)
    for number, (x1, y1, x2, y2) in enumerate(boxes, start=1):
        box = [round(x1 * scale_x), round(y1 * scale_y), round(x2 * scale_x) - 1, round(y2 * scale_y) - 1]
        draw.rectangle(box, outline=(255, 0, 0), width=width)
        draw.text((box[0] + width + 1, box[1] + width), str(number), fill=(255, 0, 0))
    return f'<img src="{_encode(shown)}" title="original with magnifier boxes">', size


def _arguments(call: dict) -> dict:
    try:
        value = json.loads(call.get("arguments_json") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _caption(call: dict, number: int | None) -> str:
    """What a tool view is: the tool, the box as the model wrote it and in the original's pixels, or γ."""
    name, arguments = html.escape(call.get("name") or "?"), _arguments(call)
    if not call.get("ok"):
        return f"<span class=err>{name} failed: {html.escape(call.get('error') or 'no reason recorded')}</span>"
    if call.get("box") is not None:
        written = html.escape(json.dumps(arguments.get("bbox_2d")))
        return (
            f"{name} (box {number} on the original) · bbox_2d as the model wrote it {written} · "
            f"in the original's pixels {list(call['box'])}"
        )
    if call.get("gamma") is not None:
        mode = f" ({html.escape(str(arguments['mode']))})" if "mode" in arguments else ""
        return f"{name} · γ = {call['gamma']:g}{mode}"
    return name


def _view(out_dir: Path, turn: dict) -> str:
    if not (turn.get("view") and (out_dir / turn["view"]).exists()):
        return ""
    with Image.open(out_dir / turn["view"]) as picture:
        return f'<img src="{_encode(_displayed(picture.convert("RGB")))}" title="tool view">'


def _tool_block(view: str, caption: str, text: str | None) -> str:
    figure = f"<figure>{view}<figcaption>{caption}</figcaption></figure>" if view or caption else ""
    said = f"<pre>{html.escape(text)}</pre>" if text else ""
    return f"<div class='turn tool'><b>tool response</b>{figure}{said}</div>"


def _conversation(record: dict, out_dir: Path) -> list[str]:
    """Every turn in order; after each model turn that called a tool, the tool's response: its view captioned (or
    the reason the call failed), inside the record's own ``tool`` turn where it has one."""
    calls, turns, boxes = list(record.get("tool_calls", [])), record.get("turns", []), 0
    tried = [t["kind"] != "tool" and "<tool_call>" in t["text"] for t in turns]
    paired = sum(tried) == len(calls)  # else the calls cannot be matched to turns: they are listed after them
    queue, parts, pending = iter(calls), [], ""
    for index, turn in enumerate(turns):
        view = _view(out_dir, turn)
        if turn["kind"] == "tool":
            parts.append(_tool_block(view, pending, turn["text"]))
            pending = ""
            continue
        text = html.escape(turn["text"])
        parts.append(f"<div class=turn><b>model · {html.escape(turn['kind'])}</b><pre>{text}</pre></div>")
        if not (paired and tried[index]):
            continue
        call = next(queue)
        boxes += bool(call.get("ok") and call.get("box") is not None)
        if index + 1 < len(turns) and turns[index + 1]["kind"] == "tool":
            pending = _caption(call, boxes)
        else:  # the agent keeps the view on the calling turn and no separate tool turn
            parts.append(_tool_block(view, _caption(call, boxes), None))
    if not paired:
        parts += [f"<p>tool call: {_caption(call, None)}</p>" for call in calls]
    return parts


def _own_answer(record: dict) -> str:
    for turn in reversed(record.get("turns", [])):
        if turn["kind"] in ("action", "final"):
            found = re.findall(r"<answer>\s*([-+]?\d+(?:\.\d+)?)", turn["text"])
            return found[-1] if found else "none"
    return "none"


def _entry(row: PredictionRow, record: dict | None, out_dir: Path, max_side: int | None, samples: int) -> str:
    score = fmt_score(row.score)
    parts = [
        f"<h3 title='{html.escape(row.image, quote=True)}'>{html.escape(Path(row.image).name)}</h3>",
        f"<p>MOS {fmt_score(row.mos)} · score {score} · status <b>{html.escape(row.status)}</b> · "
        f"{row.output_tokens} output tokens · {row.n_tool_calls} tool calls · {row.seconds:.2f} s</p>",
    ]
    if samples > 1 and record:
        parts.append(
            f"<p class=note>The score {score} reads out {samples} sampled trajectories; the conversation below is "
            f"sample 1 of {samples} (its own answer: {_own_answer(record)}).</p>"
        )
    if row.error:
        parts.append(f"<p class=err>{html.escape(row.error)}</p>")
    calls = record["tool_calls"] if record else []
    boxes = [call["box"] for call in calls if call.get("box") and call.get("ok")]
    picture, size = _original(row.image, boxes, max_side)
    caption = f"original as assessed ({size})" + (f", magnifier boxes 1–{len(boxes)}" if boxes else "")
    parts.append(f"<div class=views><figure>{picture}<figcaption>{caption}</figcaption></figure></div>")
    parts += _conversation(record, out_dir) if record else []
    return "<section class=item>" + "".join(parts) + "</section>"


def fmt_score(value: float | None) -> str:
    """A score or MOS as the report shows it: 3 decimals, "—" when missing."""
    return "—" if value is None else f"{value:.3f}"


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto}pre{white-space:pre-wrap;background:#f6f6f6;"
    "padding:6px}.views{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}.item{border-top:1px solid #ccc;"
    "margin-top:14px}.err{color:#b00}.tool{margin-left:2em;border-left:3px solid #9bd}.note{color:#555}"
)


def write_report(
    path: Path,
    out_dir: Path,
    rows: Sequence[PredictionRow],
    summaries: Sequence[DatasetSummary],
    keys: set[tuple[str, str]],
    title: str,
    max_side: int | None = None,
    samples: int = 1,
) -> None:
    """Write report.html for the sampled rows (trajectories read from the output folder).

    ``max_side`` must be the evaluation's, so that magnifier boxes land on the image the tools cropped; ``samples``
    the trajectories per image (> 1: the text shown is the first sample's, and the report says so).
    """
    records = read_trajectories(out_dir, keys)
    body = [f"<h1>{html.escape(title)}</h1>"]
    for summary in summaries:
        m = summary.metrics
        headline = f"SRCC {fmt(m.srcc)} · PLCC {fmt(m.plcc)} (raw)" if m else html.escape(summary.note)
        body.append(f"<h2>{html.escape(summary.name)}</h2><p>{summary.n_rows} images · {headline}</p>")
        for row in rows:
            if row.dataset == summary.name and row.key in keys:
                body.append(_entry(row, records.get(row.key), out_dir, max_side, samples))
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.write_text(document, encoding="utf-8")
