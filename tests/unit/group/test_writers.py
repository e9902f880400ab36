"""Writers: what they write reads back, and concurrent writers leave one whole file."""

import os
import threading
from concurrent.futures import ProcessPoolExecutor

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from nilearn import plotting

from brainscale.writers import save_figure, save_nifti, write_text, write_tsv


def _table(seed: int, n_rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"participant_id": [f"sub-{i:04d}" for i in range(n_rows)], "value": rng.normal(size=n_rows),
         "missing": np.where(np.arange(n_rows) % 3 == 0, np.nan, 1.0), "site": "é"}
    )


def test_write_tsv_reads_back_with_na_and_utf8(tmp_path):
    table = _table(0, 10)
    path = write_tsv(table, tmp_path / "new" / "t.tsv", float_format="%.6g")
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "participant_id\tvalue\tmissing\tsite"
    assert "\tn/a\t" in text
    back = pd.read_csv(path, sep="\t", na_values="n/a")
    np.testing.assert_allclose(back["value"], table["value"], rtol=1e-5)
    assert back["missing"].isna().sum() == table["missing"].isna().sum()


def test_save_nifti_and_write_text_read_back(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for name in ("m.nii.gz", "m.nii"):
        img = nib.load(save_nifti(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), tmp_path / name))
        np.testing.assert_array_equal(img.get_fdata(), data)
        np.testing.assert_array_equal(img.affine, np.diag([2.0, 2, 2, 1]))
    assert write_text("<p>é</p>\n", tmp_path / "r.html").read_bytes() == "<p>é</p>\n".encode()


def _write_in_process(args):
    path, seed = args
    for _ in range(5):
        write_tsv(_table(seed), path)
    return seed


def _assert_one_whole_copy(path, seeds):
    back = pd.read_csv(path, sep="\t", na_values="n/a")
    assert any(np.allclose(back["value"], _table(s)["value"], rtol=1e-7) for s in seeds)
    assert len(back) == 2000
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary debris


def test_concurrent_threads_writing_one_table_leave_one_whole_file(tmp_path):
    path = tmp_path / "group" / "cohort.tsv"
    seeds = range(8)
    threads = [
        threading.Thread(target=_write_in_process, args=((path, seed),)) for seed in seeds
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_one_whole_copy(path, seeds)


def test_concurrent_processes_writing_one_table_leave_one_whole_file(tmp_path):
    path = tmp_path / "group" / "cohort.tsv"
    seeds = range(4)
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert sorted(pool.map(_write_in_process, [(path, s) for s in seeds])) == list(seeds)
    _assert_one_whole_copy(path, seeds)


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_save_figure_takes_the_format_from_the_destination_not_the_temporary(tmp_path):
    svg = save_figure(_figure(), tmp_path / "figures" / "a.svg", bbox_inches="tight")
    png = save_figure(_figure(), tmp_path / "figures" / "a.png", dpi=50)
    assert b"<svg" in svg.read_bytes()[:500]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    forced = save_figure(_figure(), tmp_path / "figures" / "b.png", format="svg")
    assert b"<svg" in forced.read_bytes()[:500]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["a.png", "a.svg", "b.png"]


def test_save_figure_of_a_nilearn_display(tmp_path):
    img = nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)), np.eye(4))
    display = plotting.plot_anat(img, display_mode="z", cut_coords=1)
    try:
        path = save_figure(display, tmp_path / "anat.svg")
    finally:
        display.close()
    assert b"<svg" in path.read_bytes()[:500]
    assert [p.name for p in tmp_path.iterdir()] == ["anat.svg"]


class _DiesWhileSaving:
    """A figure whose ``savefig`` writes part of a file, then is killed."""

    def savefig(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"<svg half")
        raise KeyboardInterrupt


def test_save_figure_killed_midway_leaves_the_previous_figure_and_no_debris(tmp_path):
    (tmp_path / "old.svg").write_bytes(b"<svg>whole</svg>")
    with pytest.raises(KeyboardInterrupt):
        save_figure(_DiesWhileSaving(), tmp_path / "old.svg")
    with pytest.raises(KeyboardInterrupt):
        save_figure(_DiesWhileSaving(), tmp_path / "new.svg")
    assert (tmp_path / "old.svg").read_bytes() == b"<svg>whole</svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["old.svg"]
