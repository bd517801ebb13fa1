"""Issue 16.3: one crash-safe record per image. A kill at any point, a cut CSV row (even one cut inside a quoted
name holding a newline), a stray second header, an empty run.json or a journal record without its CSV row all
resume to the uninterrupted result; a second writer into the same folder is refused at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tooliqa_data import Assessment, EvalConfig, RunMetadata, evaluate, load_dataset
from tooliqa_data.records import FolderLock, FolderLockedError

from ._corpus import comparable, read_rows, sharpness, smooth_set

QUIET = EvalConfig(progress=False, batch_size=3, report_samples=0, plots=False)


class Sharp:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, items, images):
        self.seen += [Path(item.image).name for item in items]
        return [Assessment(sharpness(image)) for image in images]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = smooth_set(tmp_path_factory.mktemp("set") / "set", 12)
    # a name with a newline and a comma: its CSV cell is quoted and spans two lines
    (folder / "img_000.png").rename(folder / "new\nline, quoted.png")
    text = (folder / "labels.csv").read_text().replace("img_000.png", '"new\nline, quoted.png"')
    (folder / "labels.csv").write_text(text)
    return folder


def _dataset(folder: Path):
    return load_dataset("csv", folder, "labels.csv", dataset_name="set")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> tuple[list[dict], dict]:
    out = tmp_path_factory.mktemp("reference")
    evaluate([_dataset(data)], Sharp(), out, QUIET)
    return comparable(read_rows(out)), json.loads((out / "metrics.json").read_text())["datasets"]


def _same_as_reference(out: Path, reference) -> None:
    rows, metrics = reference
    assert comparable(read_rows(out)) == rows
    assert json.loads((out / "metrics.json").read_text())["datasets"] == metrics
    journal = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(journal) == len(rows) == len({(r["dataset"], r["image"]) for r in journal}), "one record per image"


def test_damaged_folder_resumes_to_the_uninterrupted_result(data, reference, tmp_path):
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    journal = (tmp_path / "trajectories.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    table = (tmp_path / "predictions.csv").read_text(encoding="utf-8")
    # killed after 7 records, mid-way through the 8th; the CSV has a cut quoted row and a second header
    (tmp_path / "trajectories.jsonl").write_text("".join(journal[:7]) + journal[7][:40], encoding="utf-8")
    header, quoted_start = table.split("\n", 1)[0], table.index('"')
    (tmp_path / "predictions.csv").write_text(table[: quoted_start + 6] + "\n" + header + "\n", encoding="utf-8")
    (tmp_path / "run.json").write_text("")  # an older runner's interrupted write
    again = Sharp()
    result = evaluate([_dataset(data)], again, tmp_path, QUIET)
    assert result.assessed == 5 and len(again.seen) == 5
    _same_as_reference(tmp_path, reference)
    assert json.loads((tmp_path / "run.json").read_text())["identity"]["model"] == ""


def test_a_journal_record_without_its_csv_row_is_kept(data, reference, tmp_path):
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    table = (tmp_path / "predictions.csv").read_text(encoding="utf-8")
    (tmp_path / "predictions.csv").write_text(table.split("\n", 1)[0] + "\n", encoding="utf-8")  # every row lost
    again = Sharp()
    evaluate([_dataset(data)], again, tmp_path, QUIET)
    assert again.seen == []  # the journal had them all
    _same_as_reference(tmp_path, reference)


def test_a_second_writer_is_refused_naming_the_folder(data, tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(FolderLockedError, match=f"{tmp_path} is being written by another evaluation"):
            evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)  # released: the folder is usable again


def test_concurrent_writers_in_two_processes(data, tmp_path):
    # the holder takes the same flock the runner takes, without importing the project (a fast second process)
    script = textwrap.dedent(
        f"""
        import fcntl, os, time
        handle = open({str(tmp_path / ".lock")!r}, "a+")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.truncate(0); handle.write(f"{{os.getpid()}}\\n"); handle.flush()
        print("locked", flush=True)
        time.sleep(30)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
            evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
        holder.send_signal(signal.SIGKILL)  # a killed holder's lock goes with it
        holder.wait(10)
        evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    finally:
        if holder.poll() is None:
            holder.kill()


_KILLED_RUN = """
import sys, time
from pathlib import Path
from tooliqa_data import Assessment, EvalConfig, evaluate, load_dataset
sys.path.insert(0, {tests!r})
from reliability._corpus import sharpness

def slow(items, images):
    time.sleep({delay})
    return [Assessment(sharpness(image)) for image in images]

config = EvalConfig(progress=False, batch_size=3, report_samples=0, plots=False)
evaluate([load_dataset("csv", Path({data!r}), "labels.csv", dataset_name="set")], slow, Path({out!r}), config)
"""


@pytest.mark.parametrize(
    "kill_after", [pytest.param(1, marks=pytest.mark.slow), 6, pytest.param(10, marks=pytest.mark.slow)]
)
def test_kill_9_mid_run_then_resume(data, reference, tmp_path, kill_after):
    """A real process killed with SIGKILL once ``kill_after`` records are on disk, resumed: the same rows and
    metrics as the uninterrupted run, none lost or duplicated."""
    script = _KILLED_RUN.format(tests=str(Path(__file__).parents[1]), delay=0.3, data=str(data), out=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    journal = tmp_path / "trajectories.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= kill_after:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert not (tmp_path / "metrics.json").exists()
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    _same_as_reference(tmp_path, reference)


def test_resume_over_another_model_names_the_differing_keys(data, tmp_path):
    meta = RunMetadata(model="a", seed=1, settings={"sampling.temperature": 1.0})
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET, meta)
    other = RunMetadata(model="a", seed=1, settings={"sampling.temperature": 0.5})
    with pytest.raises(ValueError, match=r"settings\.sampling\.temperature \(1\.0 → 0\.5\) differ; pass another --out"):
        evaluate([_dataset(data)], Sharp(), tmp_path, QUIET, other)


def test_constant_predictions_are_explained_not_a_bare_dash(data, tmp_path):
    evaluate([_dataset(data)], lambda items, images: [Assessment(3.0) for _ in images], tmp_path, QUIET)
    note = json.loads((tmp_path / "metrics.json").read_text())["datasets"]["set"]["note"]
    assert note.startswith("constant predictions: all 12 scored rows are 3, so correlations are undefined")
    assert "**set: constant predictions" in (tmp_path / "table.md").read_text()


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from tooliqa_data import Assessment, EvalConfig, evaluate, load_dataset
sys.path.insert(0, {tests!r})
from reliability._corpus import sharpness

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
config = EvalConfig(progress=False, batch_size=3, report_samples=0, plots=False)
try:
    evaluate([load_dataset("csv", Path({data!r}), "labels.csv", dataset_name="set")],
             lambda items, images: [Assessment(sharpness(image)) for image in images], Path({out!r}), config)
except OSError as err:
    print("failed:", err.strerror)
"""


def test_a_full_disk_mid_run_resumes_to_the_uninterrupted_result(data, reference, tmp_path):
    """No small tmpfs can be mounted without privileges, so the file-size limit (RLIMIT_FSIZE) plays the full
    disk: the journal's write fails part-way through a record, exactly as ENOSPC would."""
    script = _FULL_DISK.format(tests=str(Path(__file__).parents[1]), limit=2500, data=str(data), out=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "failed: File too large" in done.stdout, done.stdout + done.stderr[-2000:]
    journal = (tmp_path / "trajectories.jsonl").read_bytes()
    assert 0 < journal.count(b"\n") < 12 and not journal.endswith(b"\n"), "the limit should cut a record"
    evaluate([_dataset(data)], Sharp(), tmp_path, QUIET)
    _same_as_reference(tmp_path, reference)
