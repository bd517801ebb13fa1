"""Dataset adapters against the real label files in ../shared/data and against small generated files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import scipy.io
from conftest import shared_path

from tooliqa_data import KADID_SPLITS, LabelError, load_dataset, parse_dataset_spec

VQR1 = ("data", "visualquality_r1_labels")

# (adapter, label file under visualquality_r1_labels, rows, min MOS, max MOS) — counts and ranges from the README there.
REAL_LISTS = [
    ("kadid10k", "KADID-10K/KADID-10K_mos.txt", 10125, 1.0, 4.93),
    ("kadid10k", "KADID-10K/KADID-10K_normalized_mos.txt", 10125, 1.0, 5.0),
    ("koniq", "test_data_label/KONIQ-10K_test_all.txt", 10073, 1.0, 5.0),
    ("spaq", "test_data_label/SPAQ_test_all.txt", 11125, 1.0, 5.0),
    ("clive", "test_data_label/LIVEC_test_all.txt", 1169, 0.0, 100.0),
    ("bid", "test_data_label/BID_test_all.txt", 586, 0.0, 100.0),
    ("agiqa3k", "test_data_label/AGIQA-3K_test_all.txt", 2982, 0.0, 100.0),
    ("deblur", "test_data_label/Deblur_test_all.txt", 1199, 1.0, 5.0),
    ("sriqa", "test_data_label/SRIQA-Bench_test_all.txt", 1100, 0.0, 100.0),
    ("dehaze", "test_data_label/dehaze_test_all.txt", 600, 1.0, 5.0),
]


@pytest.mark.parametrize(
    ("name", "file", "rows", "low", "high"), REAL_LISTS, ids=[r[1].split("/")[1] for r in REAL_LISTS]
)
def test_real_label_lists(name, file, rows, low, high, tmp_path):
    labels = shared_path(*VQR1, *file.split("/"))
    dataset = load_dataset(name, tmp_path, labels, check_images=False)
    mos = np.array([item.mos for item in dataset.items])
    assert len(dataset.items) == rows
    assert mos.min() == pytest.approx(low) and mos.max() == pytest.approx(high)
    assert len({item.image for item in dataset.items}) == rows


def test_real_lists_report_missing_images(tmp_path):
    labels = shared_path(*VQR1, "test_data_label", "BID_test_all.txt")
    dataset = load_dataset("bid", tmp_path, labels)
    assert dataset.items == () and len(dataset.problems) == 586
    first = dataset.problems[0]
    assert first.line == 1 and "image not found" in first.message and "DatabaseImage0190.JPG" in first.message
    assert first.item is not None and first.item.mos == pytest.approx(52.28900832768076)


def test_deblur_assesses_the_second_column(tmp_path):
    labels = shared_path(*VQR1, "test_data_label", "Deblur_test_all.txt")
    first = load_dataset("deblur", tmp_path, labels, check_images=False).items[0]
    assert first.image.name == "0_1.png" and first.mos == pytest.approx(4.569234903368079)


@pytest.mark.parametrize(("split", "size"), [("train", 6125), ("val", 2000), ("test", 2000)])
def test_kadid_split_files_match_the_builtin_reference_lists(split, size, tmp_path):
    folder = shared_path(*VQR1, "KADID-10K")
    listed = load_dataset("kadid10k", tmp_path, folder / f"KADID-10K_{split}_set.txt", check_images=False)
    refs = {item.image.name[:3] for item in listed.items}
    assert len(listed.items) == size and refs == KADID_SPLITS[split]
    from_all = load_dataset("kadid10k", tmp_path, folder / "KADID-10K_mos.txt", split, check_images=False)
    assert len(from_all.items) == size
    assert {i.image.name for i in from_all.items} == {i.image.name for i in listed.items}


def test_kadid_official_dmos_csv(tmp_path):
    rows = shared_path(*VQR1, "KADID-10K", "KADID-10K_mos.txt").read_text().split("\n")
    lines = ["dist_img,ref_img,dmos,var"]
    for row in filter(None, rows):
        ref, dist, mos, std = row.split()
        lines.append(f"{dist},{ref},{mos},{float(std) ** 2:.3f}")
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "I01_01_01.png").write_bytes(b"x")
    dataset = load_dataset("KADID-10K", tmp_path)  # finds dmos.csv and images/ by itself
    assert len(dataset.items) == 1 and len(dataset.problems) == 10124
    assert dataset.items[0].mos == pytest.approx(4.57) and dataset.items[0].image == tmp_path / "images/I01_01_01.png"
    sizes = [len(load_dataset("kadid", tmp_path, split=s, check_images=False).items) for s in ("train", "val", "test")]
    assert sizes == [6125, 2000, 2000]


def test_clive_official_mat_files_and_training_switch(tmp_path):
    names = ["t1.bmp", "t2.bmp", "t3.bmp", "t4.bmp", "t5.bmp", "t6.bmp", "t7.bmp", "3.bmp", "4.bmp", "1000.JPG"]
    scores = np.array([[63.9, 25.3, 48.4, 62.0, 78.2, 18.9, 70.1, 43.3, 38.4, 92.4]])
    (tmp_path / "Data").mkdir()
    cells = np.empty((len(names), 1), dtype=object)
    cells[:, 0] = names
    scipy.io.savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
    scipy.io.savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": scores})
    (tmp_path / "Images" / "trainingImages").mkdir(parents=True)
    for name in names:
        folder = tmp_path / "Images" / ("trainingImages" if name.startswith("t") else "")
        (folder / name).write_bytes(b"x")
    kept = load_dataset("clive", tmp_path)
    assert [i.image.name for i in kept.items] == names and not kept.problems
    assert kept.items[0].image == tmp_path / "Images/trainingImages/t1.bmp"
    assert [i.mos for i in kept.items] == pytest.approx(scores[0].tolist())
    dropped = load_dataset("LIVE-Challenge", tmp_path, include_training=False)
    assert [i.image.name for i in dropped.items] == ["3.bmp", "4.bmp", "1000.JPG"]


def test_clive_real_list_without_training_images(tmp_path):
    labels = shared_path(*VQR1, "test_data_label", "LIVEC_test_all.txt")
    assert len(load_dataset("clive", tmp_path, labels, include_training=False, check_images=False).items) == 1162


def test_clive_mat_length_mismatch_is_an_error(tmp_path):
    scipy.io.savemat(tmp_path / "AllImages_release.mat", {"AllImages_release": np.array([["a.bmp"]], dtype=object)})
    scipy.io.savemat(tmp_path / "AllMOS_release.mat", {"AllMOS_release": np.array([[1.0, 2.0]])})
    with pytest.raises(LabelError, match="2 scores for 1 images"):
        load_dataset("clive", tmp_path, tmp_path / "AllMOS_release.mat")


def test_koniq_official_csv_split_and_zscore(tmp_path):
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n"
        "1.jpg,0,0,.2,.5,.3,120,77.38,9.1,training\n"
        "2.jpg,0,.1,.3,.4,.2,120,60.10,9.5,validation\n"
        "3.jpg,.5,.3,.2,0,0,120,12.00,8.0,test\n"
    )
    (tmp_path / "512x384").mkdir()
    for n in (1, 2, 3):
        (tmp_path / "512x384" / f"{n}.jpg").write_bytes(b"x")
    full = load_dataset("koniq10k", tmp_path)
    assert [i.mos for i in full.items] == [77.38, 60.10, 12.00] and full.items[0].image.parent.name == "512x384"
    test = load_dataset("koniq", tmp_path, split="test")
    assert [i.image.name for i in test.items] == ["3.jpg"]
    (tmp_path / "scores.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n1.jpg,0,0,1,1,1,3,4.0,.5,77.3\n"
    )
    assert load_dataset("koniq", tmp_path, "scores.csv", mos_column="MOS_zscore").items[0].mos == 77.3


def test_small_official_formats(tmp_path):
    """SPAQ CSV, TID2013 (case-insensitive file match), LIVE-FB (both layouts), PIPAL folder, AGIQA data.csv, BID."""
    (tmp_path / "spaq" / "TestImage").mkdir(parents=True)
    (tmp_path / "spaq" / "TestImage" / "00001.jpg").write_bytes(b"x")
    (tmp_path / "spaq" / "MOS and Image attribute scores.csv").write_text(
        "Image name,MOS,Brightness\n00001.jpg,42.5,50\n"
    )
    assert load_dataset("spaq", tmp_path / "spaq").items[0].mos == 42.5

    (tmp_path / "tid" / "distorted_images").mkdir(parents=True)
    (tmp_path / "tid" / "distorted_images" / "I01_01_1.BMP").write_bytes(b"x")
    (tmp_path / "tid" / "mos_with_names.txt").write_text("5.51429 i01_01_1.bmp\n")
    tid = load_dataset("tid2013", tmp_path / "tid")
    assert tid.items[0].image.name == "I01_01_1.BMP" and tid.items[0].mos == 5.51429

    (tmp_path / "flive" / "database" / "voc").mkdir(parents=True)
    (tmp_path / "flive" / "database" / "voc" / "a.jpg").write_bytes(b"x")
    (tmp_path / "flive" / "labels_image.csv").write_text("name,mos\nvoc/a.jpg,71.2\n")
    (tmp_path / "flive" / "labels640.csv").write_text("mos_patch_1,mos_image,name_image\n60,65.5,voc/a.jpg\n")
    assert load_dataset("flive", tmp_path / "flive").items[0].mos == 71.2
    assert load_dataset("livefb", tmp_path / "flive", "labels640.csv").items[0].mos == 65.5

    (tmp_path / "pipal" / "Train_Label").mkdir(parents=True)
    (tmp_path / "pipal" / "Train_Label" / "A0001.txt").write_text("A0001_00_00.bmp,1520.0648\nA0001_00_01.bmp,1400.5\n")
    pipal = load_dataset("pipal", tmp_path / "pipal", check_images=False)
    assert [i.mos for i in pipal.items] == [1520.0648, 1400.5]

    (tmp_path / "agiqa").mkdir()
    (tmp_path / "agiqa" / "data.csv").write_text("name,prompt,mos_quality,std_quality\nx.jpg,a cat,3.2,0.4\n")
    assert load_dataset("agiqa-3k", tmp_path / "agiqa", check_images=False).items[0].mos == 3.2

    (tmp_path / "bid").mkdir()
    (tmp_path / "bid" / "DatabaseGrades.csv").write_text("image,mos\nDatabaseImage0001.JPG,3.1\n")
    assert load_dataset("bid", tmp_path / "bid", check_images=False).items[0].mos == 3.1


def write_xlsx(path, rows: list[list[str | float]]) -> None:
    """A minimal .xlsx (shared strings for text, numbers inline) as spreadsheet programs write it."""
    strings = sorted({cell for row in rows for cell in row if isinstance(cell, str)})
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    cells = []
    for r, row in enumerate(rows, start=1):
        xml = "".join(
            f'<c r="{"ABCDEFG"[c]}{r}" t="s"><v>{strings.index(v)}</v></c>'
            if isinstance(v, str)
            else f'<c r="{"ABCDEFG"[c]}{r}"><v>{v}</v></c>'
            for c, v in enumerate(row)
            if v != ""
        )
        cells.append(f'<row r="{r}">{xml}</row>')
    with zipfile.ZipFile(path, "w") as archive:
        sst = "".join(f"<si><t>{s}</t></si>" for s in strings)
        archive.writestr("xl/sharedStrings.xml", f"<sst {ns}>{sst}</sst>")
        archive.writestr(
            "xl/worksheets/sheet1.xml", f"<worksheet {ns}><sheetData>{''.join(cells)}</sheetData></worksheet>"
        )


def test_spaq_official_xlsx(tmp_path):
    (tmp_path / "Annotations").mkdir()
    write_xlsx(
        tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx",
        [["Image name", "MOS", "Brightness"], ["00001.jpg", 42.5, 50], ["00002.jpg", 71.25, ""], ["00003.jpg", "x", 1]],
    )
    with pytest.raises(LabelError, match=r"scores.xlsx:4: MOS 'x' is not a number"):
        load_dataset("spaq", tmp_path, check_images=False)
    write_xlsx(tmp_path / "s.xlsx", [["Image name", "MOS"], ["00001.jpg", 42.5], ["00002.jpg", 71.25]])
    dataset = load_dataset("spaq", tmp_path, "s.xlsx", check_images=False)
    assert [(i.image.name, i.mos) for i in dataset.items] == [("00001.jpg", 42.5), ("00002.jpg", 71.25)]
    (tmp_path / "broken.xlsx").write_bytes(b"PK not really")
    with pytest.raises(LabelError, match="not a readable .xlsx"):
        load_dataset("spaq", tmp_path, "broken.xlsx")


def test_biq2021_real_images(tmp_path):
    root = shared_path("data", "biq2021")
    dataset = load_dataset("biq2021", root)
    mos = [item.mos for item in dataset.items]
    assert len(dataset.items) == 2000 and not dataset.problems
    assert min(mos) == 0.0 and max(mos) == 1.0 and np.mean(mos) == pytest.approx(0.652, abs=0.001)
    original = load_dataset("biq2021", root, "test_labels_original.csv", image_dir="images")
    assert [i.image for i in original.items] == [i.image for i in dataset.items]


def test_generic_manifest_tsv_and_dmos_flip(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "scores.tsv").write_text("path\tdmos\na.png\t10\nb.png\t30\n")
    flipped = load_dataset("csv", tmp_path, "scores.tsv", lower_better=True)
    assert [i.mos for i in flipped.items] == [30.0, 10.0] and "flipped" in flipped.note
    (tmp_path / "manifest.csv").write_text("image\nb.png\n")  # no score column: unlabeled
    unlabeled = load_dataset("manifest", tmp_path)
    assert unlabeled.items[0].mos is None and not unlabeled.labeled


def test_folder_adapter_lists_images_sorted(tmp_path):
    for name in ("b.jpg", "a.PNG", "sub/c.bmp", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    dataset = load_dataset("folder", tmp_path)
    assert [i.image.relative_to(tmp_path).as_posix() for i in dataset.items] == ["a.PNG", "b.jpg", "sub/c.bmp"]
    assert all(i.mos is None for i in dataset.items) and dataset.name == tmp_path.name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,mos\na.png,4.1\nb.png,four\n", r"labels.csv:3: MOS 'four' is not a number"),
        ("image,mos\na.png,4.1\nb.png,nan\n", r"labels.csv:3: MOS 'nan' is not finite"),
        ("image,mos\na.png,4.1\na.png,3.0\n", r"labels.csv:3: image 'a.png' already listed on line 2"),
        ("img_file,quality_x\na.png,1\n", r"labels.csv:1: no column named any of"),
        ("image,mos\na.png\n", r"labels.csv:2: row has 1 cells"),
    ],
)
def test_bad_rows_name_file_and_line(content, message, tmp_path):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(LabelError, match=message):
        load_dataset("csv", tmp_path, "labels.csv", check_images=False)


def test_bad_whitespace_row_and_options(tmp_path):
    (tmp_path / "dehaze_test_all.txt").write_text("a.png a_x.png 3.2\nb.png b_x.png\n")
    with pytest.raises(LabelError, match=r"dehaze_test_all.txt:2: expected 3 columns \(ref dist mos\), got 2"):
        load_dataset("dehaze", tmp_path)
    with pytest.raises(ValueError, match="no split 'test'"):
        load_dataset("dehaze", tmp_path, split="test")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        load_dataset("nope", tmp_path)
    with pytest.raises(TypeError, match="colour"):
        load_dataset("dehaze", tmp_path, colour=True)
    with pytest.raises(LabelError, match="no spaq label file found"):
        load_dataset("spaq", tmp_path)


def test_parse_dataset_spec():
    spec = parse_dataset_spec("kadid10k/test=/data/kadid")
    assert (spec.name, spec.adapter, str(spec.root), spec.labels, spec.split) == (
        "KADID-10K/test", "kadid10k", "/data/kadid", None, "test",
    )  # fmt: skip
    spec = parse_dataset_spec("clive=/data/ChallengeDB:/labels/LIVEC_test_all.txt")
    assert (spec.name, spec.adapter, str(spec.labels)) == ("CLIVE", "livec", "/labels/LIVEC_test_all.txt")
    assert parse_dataset_spec("mine=/photos:/photos/s.csv").adapter == "csv"
    assert parse_dataset_spec("holiday=/photos").adapter == "folder"
    with pytest.raises(ValueError, match="NAME=ROOT"):
        parse_dataset_spec("/photos")
