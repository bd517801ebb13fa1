"""The evaluation runner end to end with a real (sharpness) assessor: outputs, resumption, bad inputs, tool tables."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import scipy.stats
from conftest import shared_path

from tooliqa_data import (
    Assessment,
    EvalConfig,
    RunMetadata,
    evaluate,
    load_dataset,
)

from ._assessors import SharpnessAssessor, sharpness
from .test_images import bad_corpus, good_odd_corpus

QUIET = EvalConfig(progress=False, batch_size=4)


def _rows(out_dir) -> list[dict]:
    with (out_dir / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _biq20():
    dataset = load_dataset("biq2021", shared_path("data", "biq2021"))
    return dataset.__class__(dataset.name, dataset.items[:20], (), dataset.source, dataset.note)


def test_end_to_end_synthetic_and_biq2021(synthetic_dir, tmp_path):
    synthetic = load_dataset("csv", synthetic_dir, dataset_name="synthetic")
    biq = _biq20()
    meta = RunMetadata(model="sharpness", seed=3, settings={"temperature": 0.0, "tools": "none"})
    result = evaluate([synthetic, biq], SharpnessAssessor(), tmp_path, QUIET, meta)
    rows = _rows(tmp_path)
    assert len(rows) == 45 + 20 and {r["status"] for r in rows} == {"ok"}
    assert result.assessed == 65 and result.skipped == 0

    # metrics.json equals scipy recomputed from predictions.csv; the blur-only synthetic set ranks well by sharpness
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("synthetic", "BIQ2021"):
        mine = [r for r in rows if r["dataset"] == name]
        pred, mos = [float(r["score"]) for r in mine], [float(r["mos"]) for r in mine]
        entry = metrics["datasets"][name]["metrics"]
        # torchmetrics ranks in float32: agreement with scipy is ~1e-7
        assert entry["srcc"] == pytest.approx(scipy.stats.spearmanr(pred, mos).statistic, abs=1e-6)
        assert entry["plcc"] == pytest.approx(scipy.stats.pearsonr(pred, mos).statistic, abs=1e-9)
        assert entry["krcc"] == pytest.approx(scipy.stats.kendalltau(pred, mos).statistic, abs=1e-9)
    assert metrics["datasets"]["synthetic"]["metrics"]["srcc"] > 0.7
    assert metrics["run"]["model"] == "sharpness" and metrics["run"]["settings"]["temperature"] == 0.0
    assert metrics["run"]["eval"]["batch_size"] == 4 and "raw" in metrics["plcc_note"]
    mean = (metrics["datasets"]["synthetic"]["metrics"]["srcc"] + metrics["datasets"]["BIQ2021"]["metrics"]["srcc"]) / 2
    assert metrics["average"]["srcc"] == pytest.approx(mean) == pytest.approx(result.average_srcc)

    # a row holds the real computation for its image
    first = rows[0]
    from tooliqa_data import load_image

    assert float(first["score"]) == pytest.approx(sharpness(load_image(first["image"])), rel=1e-6)
    table = (tmp_path / "table.md").read_text()
    assert "| Method | synthetic | BIQ2021 | Avg |" in table and "raw Pearson" in table
    assert (tmp_path / "scatter_synthetic.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "scatter_BIQ2021.png").exists()
    assert "Efficiency (paper Table 8)" in (tmp_path / "tools.md").read_text()
    report = (tmp_path / "report.html").read_text()
    assert report.count("<section class=item>") == 2 * QUIET.report_samples and "data:image/png;base64," in report
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 65 and json.loads(lines[0])["turns"][0]["kind"] == "rubric"


def test_resume_skips_finished_rows_and_reproduces_metrics(synthetic_dir, tmp_path):
    synthetic = load_dataset("csv", synthetic_dir, dataset_name="synthetic")
    first = SharpnessAssessor()
    evaluate([synthetic], first, tmp_path, QUIET)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["datasets"]

    again = SharpnessAssessor()
    result = evaluate([synthetic], again, tmp_path, QUIET)
    assert again.calls == 0 and result.skipped == 45 and result.assessed == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["datasets"] == metrics

    # an interrupted run: the journal lost its last 10 records and the new last one is cut in half; the CSV has a
    # cut row and a stray second header (issue 16.3): the journal is the record, the CSV is rebuilt from it
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "trajectories.jsonl").write_text("".join(lines[:-10]) + lines[-10][:15])
    table = (tmp_path / "predictions.csv").read_text().splitlines(keepends=True)
    (tmp_path / "predictions.csv").write_text("".join(table[:20]) + table[0] + table[20][:30])
    resumed = SharpnessAssessor()
    result = evaluate([synthetic], resumed, tmp_path, QUIET)
    assert len(resumed.seen) == 10 and result.assessed == 10 and len(_rows(tmp_path)) == 45
    after = json.loads((tmp_path / "metrics.json").read_text())["datasets"]
    assert after["synthetic"]["metrics"] == metrics["synthetic"]["metrics"]

    with pytest.raises(ValueError, match="holds predictions of another run"):
        evaluate([synthetic], SharpnessAssessor(), tmp_path, QUIET, RunMetadata(model="other"))
    fresh = SharpnessAssessor()
    evaluate([synthetic], fresh, tmp_path, EvalConfig(progress=False, resume=False), RunMetadata(model="other"))
    assert len(fresh.seen) == 45 and len(_rows(tmp_path)) == 45


def test_bad_inputs_become_one_error_row_each(synthetic_dir, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    errors = bad_corpus(folder)
    odd = good_odd_corpus(folder)
    shutil.copy(synthetic_dir / "images" / "r000_blur_1.png", folder / "good.png")
    names = sorted(list(errors) + list(odd) + ["good.png", "missing.png"])
    (folder / "labels.csv").write_text("image,mos\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    dataset = load_dataset("csv", folder, "labels.csv", dataset_name="bad")
    assert len(dataset.problems) == 1  # missing.png, reported not dropped
    evaluate([dataset], SharpnessAssessor(), tmp_path / "out", QUIET)
    rows = {r["image"].rsplit("/", 1)[1]: r for r in _rows(tmp_path / "out")}
    assert len(rows) == len(names)
    expected = {"truncated.jpg": "corrupt", "garbage.png": "corrupt", "empty.jpg": "corrupt"}
    expected |= {"tiny_20px.png": "too_small", "bomb.png": "decompression_bomb", "missing.png": "missing_image"}
    for name, status in expected.items():
        assert rows[name]["status"] == status and rows[name]["score"] == "" and name in rows[name]["error"], name
    for name in [*odd, "good.png"]:
        assert rows[name]["status"] == "ok" and float(rows[name]["score"]) >= 0, name
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())["datasets"]["bad"]
    assert summary["n_errors"] == 6 and summary["n_scored"] == len(odd) + 1

    # the missing file turns up: a rerun assesses just it; the corrupt files are not retried
    shutil.copy(folder / "good.png", folder / "missing.png")
    rerun = SharpnessAssessor()
    evaluate([load_dataset("csv", folder, "labels.csv", dataset_name="bad")], rerun, tmp_path / "out", QUIET)
    assert [p.rsplit("/", 1)[1] for p in rerun.seen] == ["missing.png"]
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())["datasets"]["bad"]
    assert summary["n_errors"] == 5 and summary["n_rows"] == len(names)


class FlakyAssessor(SharpnessAssessor):
    """Raises on its second batch; per batch, reports a parse failure for the first image and NaN for the second."""

    def __call__(self, items, images):
        if self.calls == 1:
            self.calls += 1
            raise RuntimeError("CUDA out of memory (simulated)")
        results = super().__call__(items, images)
        results[0] = Assessment(None, "parse_failure", detail="<answer>great</answer>")
        if len(results) > 1:
            results[1] = Assessment(float("nan"))  # a broken assessor: must not reach the metrics
        return results


def test_assessor_errors_are_rows_and_retried(synthetic_dir, tmp_path):
    synthetic = load_dataset("csv", synthetic_dir, dataset_name="synthetic")
    evaluate([synthetic], FlakyAssessor(), tmp_path, QUIET)
    rows = _rows(tmp_path)
    assert sum(r["status"] == "assessor_error" for r in rows) == 4 and "out of memory" in rows[4]["error"]
    retry = SharpnessAssessor()
    evaluate([synthetic], retry, tmp_path, QUIET)
    assert len(retry.seen) == 4
    summary = json.loads((tmp_path / "metrics.json").read_text())["datasets"]["synthetic"]
    assert summary["n_rows"] == 45 and summary["n_errors"] == 0
    assert summary["n_parse_failures"] == 11 and summary["statuses"]["parse_failure"] == 11
    assert summary["statuses"]["non_finite_score"] == 10 and summary["n_scored"] == 45 - 21
    assert "score nan" in next(r["error"] for r in _rows(tmp_path) if r["status"] == "non_finite_score")


def test_tool_tables_views_and_boxes(synthetic_dir, tmp_path):
    synthetic = load_dataset("csv", synthetic_dir, dataset_name="synthetic")
    config = EvalConfig(progress=False, batch_size=5, report_samples=45, bootstrap=200)
    result = evaluate([synthetic], SharpnessAssessor(tools=True), tmp_path, config)
    rows = _rows(tmp_path)
    used = [r for r in rows if r["tools"] == "magnifier"]
    free = [r for r in rows if r["n_tool_calls"] == "0"]
    failed_only = [r for r in rows if r["n_tool_calls"] != "0" and r["tools"] == ""]
    assert used and free and failed_only
    call = json.loads(used[0]["tool_calls"])[0]
    assert call["name"] == "magnifier" and call["ok"] and len(call["arguments"]["bbox_2d"]) == 4
    breakdown = {row.category: row for row in result.tools["synthetic"]}
    assert breakdown["all"].n == 45 and breakdown["all"].frequency == 100.0
    assert breakdown["tool"].n == len(used) and breakdown["only magnifier"].n == len(used)
    assert breakdown["tool-free"].frequency == pytest.approx(100 * len(free) / 45)
    assert breakdown["failed calls only"].n == len(failed_only)
    used_pred = [float(r["score"]) for r in used]
    if len(used) >= 3:
        assert breakdown["tool"].srcc == pytest.approx(
            scipy.stats.spearmanr(used_pred, [float(r["mos"]) for r in used]).statistic, abs=1e-6
        )
    speed = result.efficiency["all"]
    assert speed.images == 45 and speed.tool_calls_per_image == pytest.approx(
        sum(int(r["n_tool_calls"]) for r in rows) / 45
    )
    assert speed.output_tokens_per_image == pytest.approx(sum(int(r["output_tokens"]) for r in rows) / 45)
    assert len(list((tmp_path / "report_assets").glob("*.png"))) == len(used)
    report = (tmp_path / "report.html").read_text()
    assert report.count('title="tool view"') == len(used) and "Tool call failed" in report
    ci = result.summaries[0].metrics.srcc_ci
    assert ci is not None and ci[0] < result.summaries[0].metrics.srcc < ci[1]
    assert "only magnifier" in (tmp_path / "tools.md").read_text()


def test_unlabeled_folder_scores_only(synthetic_dir, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(synthetic_dir / "images", folder)
    dataset = load_dataset("folder", folder)
    result = evaluate([dataset], SharpnessAssessor(), tmp_path / "out", EvalConfig(progress=False, limit=7))
    rows = _rows(tmp_path / "out")
    assert len(rows) == 7 and all(r["mos"] == "" and r["score"] for r in rows)
    assert result.summaries[0].metrics is None and "metrics skipped" in result.summaries[0].note
    assert "metrics skipped" in (tmp_path / "out" / "table.md").read_text()
    assert not list((tmp_path / "out").glob("scatter_*.png"))
