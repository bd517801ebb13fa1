"""A self-contained HTML report: for sampled images, the original with the magnifier boxes drawn, every tool view and
the model's text per turn. Images are embedded as base64 PNG, so the one file can be mailed or attached to an issue.

Which images are shown is decided before the run (:func:`report_keys`: a seeded hash of dataset and image, so the
choice does not depend on order or on resumption), and the runner saves tool views only for those.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
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


def _data_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((_THUMB, _THUMB))
    factor = -(-_THUMB // 2 // max(image.size))  # ceil: at least half the thumbnail size
    if factor > 1:  # small images (e.g. the 96-160 px synthetic set) are enlarged with visible pixels, not smoothed
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _original(image: str, boxes: list[list[int]], max_side: int | None) -> str:
    try:
        picture = load_pil(image, min_side=1, max_side=max_side)
    except ImageError as exc:
        return f"<p class=err>{html.escape(str(exc))}</p>"
    draw = ImageDraw.Draw(picture)
    width = max(2, max(picture.size) // 150)
    for box in boxes:
        draw.rectangle(box, outline=(255, 0, 0), width=width)
    return f'<img src="{_data_uri(picture)}" title="original with magnifier boxes">'


def _entry(row: PredictionRow, record: dict | None, out_dir: Path, max_side: int | None) -> str:
    parts = [
        f"<h3 title='{html.escape(row.image, quote=True)}'>{html.escape(Path(row.image).name)}</h3>",
        f"<p>MOS {row.mos if row.mos is not None else '—'} · score {row.score if row.score is not None else '—'} "
        f"· status <b>{html.escape(row.status)}</b> · {row.output_tokens} output tokens · {row.n_tool_calls} tool "
        f"calls · {row.seconds:.2f} s</p>",
    ]
    if row.error:
        parts.append(f"<p class=err>{html.escape(row.error)}</p>")
    calls = record["tool_calls"] if record else []
    boxes = [call["box"] for call in calls if call.get("box") and call.get("ok")]
    parts.append(
        f"<div class=views><figure>{_original(row.image, boxes, max_side)}<figcaption>original</figcaption></figure>"
    )
    parts.append("</div>")
    for turn in record["turns"] if record else []:
        view = ""
        if turn.get("view") and (out_dir / turn["view"]).exists():
            with Image.open(out_dir / turn["view"]) as picture:
                view = f'<img src="{_data_uri(picture.convert("RGB"))}" title="tool view">'
        text = html.escape(turn["text"])
        parts.append(f"<div class=turn><b>{html.escape(turn['kind'])}</b>{view}<pre>{text}</pre></div>")
    return "<section class=item>" + "".join(parts) + "</section>"


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto}pre{white-space:pre-wrap;background:#f6f6f6;"
    "padding:6px}.views{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}.item{border-top:1px solid #ccc;"
    "margin-top:14px}.err{color:#b00}"
)


def write_report(
    path: Path,
    out_dir: Path,
    rows: Sequence[PredictionRow],
    summaries: Sequence[DatasetSummary],
    keys: set[tuple[str, str]],
    title: str,
    max_side: int | None = None,
) -> None:
    """Write report.html for the sampled rows (trajectories read from the output folder).

    ``max_side`` must be the evaluation's, so that magnifier boxes land on the image the model saw.
    """
    records = read_trajectories(out_dir, keys)
    body = [f"<h1>{html.escape(title)}</h1>"]
    for summary in summaries:
        m = summary.metrics
        headline = f"SRCC {fmt(m.srcc)} · PLCC {fmt(m.plcc)} (raw)" if m else html.escape(summary.note)
        body.append(f"<h2>{html.escape(summary.name)}</h2><p>{summary.n_rows} images · {headline}</p>")
        for row in rows:
            if row.dataset == summary.name and row.key in keys:
                body.append(_entry(row, records.get(row.key), out_dir, max_side))
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.write_text(document, encoding="utf-8")
