"""Issue 16.5 and 16.7: the generated corpus of bad and odd files and label variants. Every case is one row or one
error naming the file and line, with the right status and retry policy; none crashes, hangs or is dropped."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from data.test_images import bad_corpus, bomb_png, good_odd_corpus
from PIL import Image

from tooliqa_data import EvalConfig, LabelError, evaluate, load_dataset, load_image
from tooliqa_data.images import NotAFileError, UnreadableImageError
from tooliqa_data.records import RETRIED, read_predictions

from ._corpus import sharpness

QUIET = EvalConfig(progress=False, batch_size=4, report_samples=0, plots=False)


def _labels(folder, names, mos=None) -> None:
    import csv

    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("image", "mos"))
        writer.writerows((name, mos[i] if mos else f"{1 + i % 4}.5") for i, name in enumerate(names))


def _png(path, size=(48, 40)) -> None:
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(path, format="PNG")


def strange_names(folder) -> list[str]:
    """Valid images under names that break naive code: spaces (trailing too), quotes, commas, a newline, unicode,
    a leading dash, a 200-byte name, a nested folder, and a symlink alias of another image."""
    names = ["with space.png", "trailing space.png ", "quote\"s.png", "comma,name.png", "new\nline.png",
             "ünïcödé-写真.png", "-leading-dash.png", "x" * 196 + ".png", "nested/deeper/a.png", "%20encoded.png"]  # fmt: skip
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        _png(folder / name)
    os.symlink(folder / "with space.png", folder / "alias.png")
    return [*names, "alias.png"]


def odd_geometry(folder) -> list[str]:
    """Extreme but decodable shapes: 1:40 and 40:1 strips, a 32-px square, a 4,096 × 32 panorama, an animated GIF."""
    _png(folder / "tall_strip.png", (32, 1280))
    _png(folder / "wide_strip.png", (1280, 32))
    _png(folder / "min_side.png", (32, 32))
    _png(folder / "panorama.png", (4096, 32))
    frames = [Image.new("RGB", (40, 40), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    return ["tall_strip.png", "wide_strip.png", "min_side.png", "panorama.png", "animated.gif"]


def bad_files(folder) -> dict[str, str]:
    """name → status: decode failures, bombs, cuts, and things that are not files at all."""
    expected = {name: error.kind for name, error in bad_corpus(folder).items()}
    (folder / "wide_bomb.png").write_bytes(bomb_png(200_000, 1_000))
    data = (folder / "tiny_20px.png").read_bytes()
    (folder / "png_cut_in_header.png").write_bytes(data[:20])
    _png(folder / "png_cut_in_data.png", (400, 300))
    full = (folder / "png_cut_in_data.png").read_bytes()
    (folder / "png_cut_in_data.png").write_bytes(full[: len(full) // 3])
    (folder / "a_folder.png").mkdir()
    os.mkfifo(folder / "a_fifo.png")  # opening it would block forever
    os.symlink("/dev/zero", folder / "dev_zero.png")  # reading it would never end
    os.symlink(folder / "gone.png", folder / "dangling.png")
    expected |= {"wide_bomb.png": "decompression_bomb", "png_cut_in_header.png": "corrupt"}
    expected |= {"png_cut_in_data.png": "corrupt", "a_folder.png": "not_a_file", "a_fifo.png": "not_a_file"}
    expected |= {"dev_zero.png": "not_a_file", "dangling.png": "missing_image"}
    return expected


def test_the_corpus_gives_one_clear_row_per_file(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    bad = bad_files(folder)
    odd = list(good_odd_corpus(folder))
    odd += strange_names(folder) + odd_geometry(folder)
    long_name = "y" * 300 + ".png"
    names = sorted([*bad, *odd, long_name])
    _labels(folder, names)
    dataset = load_dataset("csv", folder, "labels.csv", dataset_name="corpus")
    problems = {p.item.image.name if p.item else "": p for p in dataset.problems}
    statuses = {p.kind for p in dataset.problems}
    assert statuses <= {"missing_image", "not_a_file"}
    assert "too long for the file system" in next(p.message for p in dataset.problems if "yyyy" in p.message)

    def score(items, images):
        from tooliqa_data import Assessment

        return [Assessment(sharpness(image)) for image in images]

    evaluate([dataset], score, tmp_path / "out", QUIET)
    rows = {row.image: row for row in read_predictions(tmp_path / "out")}
    assert len(rows) == len(names), "one row per label line: nothing dropped, nothing doubled"
    by_name = {name: next(r for image, r in rows.items() if image.endswith(name) or image.endswith(name[:120]))
               for name in names}  # fmt: skip
    for name, status in bad.items():
        row = by_name[name]
        assert row.status == status and row.score is None, (name, row.status, row.error)
        assert name.strip() in row.error or name in problems, (name, row.error)
    for name in odd:
        assert by_name[name].status == "ok" and by_name[name].score is not None, (name, by_name[name].error)
    assert by_name[long_name].status == "missing_image" and "too long" in by_name[long_name].error

    # a rerun retries exactly the RETRIED statuses (cheap image errors whose cause may be gone), nothing else
    seen = []

    def spy(items, images):
        seen.extend(str(item.image) for item in items)
        return score(items, images)

    os.remove(folder / "dangling.png")
    _png(folder / "dangling.png")  # the late copy arrives
    evaluate([load_dataset("csv", folder, "labels.csv", dataset_name="corpus")], spy, tmp_path / "out", QUIET)
    assert [os.path.basename(path) for path in seen] == ["dangling.png"]
    assert "missing_image" in RETRIED and "not_a_file" in RETRIED and "corrupt" not in RETRIED


def test_permission_errors_are_unreadable_not_corrupt(tmp_path):
    path = tmp_path / "locked.png"
    _png(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: a mode-000 file is still readable so no permission error can be made")
        with pytest.raises(UnreadableImageError, match="locked.png: cannot be read"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_a_fifo_and_a_folder_are_not_files(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    for name, what in (("pipe.png", "a FIFO"), ("dir.png", "a folder")):
        with pytest.raises(NotAFileError, match=f"{name}: is {what}, not an image file"):
            load_image(tmp_path / name)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("0_5", "is not a number"),  # float() reads 5.0
        ("nan", "is not finite"),
        ("1e999", "is not finite"),
        ("５", "is not a number"),  # full-width digit: float() reads 5.0
        ("3,5", "is not a number"),
        ("", "is not a number"),
    ],
)
def test_mos_is_parsed_strictly(tmp_path, cell, message):
    _png(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text(f'image,mos\na.png,4\na.png2,"{cell}"\n', encoding="utf-8")
    with pytest.raises(LabelError, match=f"labels.csv:3: MOS {re.escape(repr(cell))} {message}"):
        load_dataset("csv", tmp_path, "labels.csv")


def test_unicode_minus_and_exponents_are_numbers(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _png(tmp_path / name)
    (tmp_path / "labels.csv").write_text("image,mos\na.png,\u22123.5\nb.png,+2e-1\nc.png, 4.25 \n", encoding="utf-8")
    assert [item.mos for item in load_dataset("csv", tmp_path, "labels.csv").items] == [-3.5, 0.2, 4.25]


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        (["images/a.png", "images/./a.png"], "labels.csv:3: image 'images/a.png' already listed on line 2"),
        (["images/a.png", "images//a.png"], "labels.csv:3: image 'images/a.png' already listed on line 2"),
        (["images/a.png", "other/../images/a.png"], "labels.csv:3: image 'images/a.png' already listed on line 2"),
        (["../outside.png"], r"labels.csv:2: image path '../outside.png' climbs out of the dataset root"),
        (["images/../../outside.png"], "labels.csv:2: image path .* climbs out of the dataset root"),
        (["/etc/passwd"], "labels.csv:2: image path '/etc/passwd' is absolute and outside the dataset root"),
    ],
)
def test_aliased_and_escaping_paths(tmp_path, listed, message):
    (tmp_path / "images").mkdir()
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "outside.png")
    root = tmp_path / "root"
    shutil.copytree(tmp_path / "images", root / "images")
    _labels(root, listed)
    with pytest.raises(LabelError, match=message):
        load_dataset("csv", root, "labels.csv")


def test_an_absolute_path_inside_the_root_is_kept_relative(tmp_path):
    (tmp_path / "images").mkdir()
    _png(tmp_path / "images" / "a.png")
    _labels(tmp_path, [str(tmp_path / "images" / "a.png")])
    (item,) = load_dataset("csv", tmp_path, "labels.csv").items
    assert item.image == tmp_path / "images" / "a.png"


def test_a_trailing_space_is_part_of_the_name(tmp_path):
    _png(tmp_path / "a.png ")
    _png(tmp_path / "b.png")
    _labels(tmp_path, ["a.png ", "b.png ", "c.png "])  # a.png␠ exists as written; b.png␠ is found trimmed
    dataset = load_dataset("csv", tmp_path, "labels.csv")
    assert [item.image.name for item in dataset.items] == ["a.png ", "b.png"]
    (problem,) = dataset.problems
    assert problem.line == 4 and "'c.png '" in problem.message  # the space is visible in the message
