"""atomic_path: a writer that dies leaves nothing; concurrent writers never expose a half file."""

from __future__ import annotations

import threading
import time

import pytest

from brainscale.derivatives import atomic_path, atomic_write

CHUNK = 64 * 1024
N_CHUNKS = 32  # 2 MiB per copy: long enough for a reader to catch a file being written


def _write_slowly(tmp, byte: bytes) -> None:
    with open(tmp, "wb") as handle:
        for _ in range(N_CHUNKS):
            handle.write(byte * CHUNK)
            handle.flush()
            time.sleep(0.0005)


def test_writer_raising_midway_leaves_no_target_and_no_temporary(tmp_path):
    target = tmp_path / "new" / "model.pt"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name.endswith(".tmp")
            tmp.write_bytes(b"half a model")
            raise RuntimeError("killed")
    assert list(target.parent.iterdir()) == []


def test_writer_raising_midway_keeps_the_previous_file(tmp_path):
    target = tmp_path / "figure.svg"
    target.write_bytes(b"<svg>old</svg>")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"<svg>ne")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"<svg>old</svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.svg"]


def test_writer_that_removes_its_file_raises_and_leaves_the_target(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        with atomic_path(target) as tmp:
            tmp.unlink()
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_temporary_names_are_unique_and_the_last_writer_wins(tmp_path):
    target = tmp_path / "t.bin"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the outer block ends last
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    target = tmp_path / "shared" / "figure.png"
    bytes_of = [bytes([65 + i]) for i in range(4)]
    seen: list[tuple[int, set[int]]] = []
    done = threading.Event()

    def write(byte: bytes) -> None:
        for _ in range(4):
            with atomic_path(target) as tmp:
                _write_slowly(tmp, byte)

    def read() -> None:
        while not done.is_set():
            try:
                data = target.read_bytes()
            except FileNotFoundError:
                continue
            seen.append((len(data), set(data)))

    writers = [threading.Thread(target=write, args=(b,)) for b in bytes_of]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert len(seen) > 10, "the reader never saw the file"
    assert {length for length, _ in seen} == {CHUNK * N_CHUNKS}
    assert all(len(values) == 1 for _, values in seen), "a read mixed two writers' bytes"
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]


def test_atomic_write_is_atomic_path_with_a_file_object(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_write(target) as handle:
        handle.write("é\n")
        assert not target.exists()
    assert target.read_text() == "é\n"
    with pytest.raises(ValueError):
        with atomic_write(target, "wb") as handle:
            handle.write(b"partial")
            raise ValueError
    assert target.read_text() == "é\n" and len(list(tmp_path.iterdir())) == 1
