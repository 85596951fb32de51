"""`BlobFile.seek` goes anywhere: a read after a seek starts a new read at the offset
(the crate's `Reader::starting_at`), so the bytes skipped are never read; and
`Cache.get_range`."""

from __future__ import annotations

import io
import threading
import zipfile

import pytest
import readthrough
from conftest import WAIT, blob


def test_seek_to_the_footer_of_a_hit_reads_only_the_footer(origin, cache_dir):
    body = blob(4 << 20)
    origin.serve("/table.parquet", body)
    cache = readthrough.Cache(cache_dir)
    url = origin.url("/table.parquet")
    cache.path(url)
    with cache.open(url) as f:
        assert f.seekable() and f.kind == "hit"
        assert f.seek(-8, io.SEEK_END) == len(body) - 8
        served = cache.stats().bytes_served
        assert f.read(8) == body[-8:]
        # Only the footer was read: the 4 MiB before it were skipped, not read.
        assert cache.stats().bytes_served - served == 8
        assert f.read(1) == b""
        assert f.seek(1000) == 1000 and f.tell() == 1000
        assert f.read(10) == body[1000:1010]
        assert f.seek(-1010, io.SEEK_CUR) == 0
        assert f.read(5) == body[:5]
        assert f.seek(3 << 20, io.SEEK_CUR) == 5 + (3 << 20)
        assert f.read() == body[5 + (3 << 20) :]
        assert f.seek(len(body) + 100) == len(body) + 100
        assert f.read(10) == b"" and f.readinto(bytearray(10)) == 0
        assert f.seek(-3, io.SEEK_END) == len(body) - 3
        assert f.read() == body[-3:]
    assert origin.requests["/table.parquet"] == 1


@pytest.mark.parametrize("read_first", [False, True], ids=["fresh", "after-a-read"])
def test_footer_of_a_fill_in_progress_waits_for_it_to_land(origin, cache_dir, read_first):
    body = blob(2 << 20, seed=5)
    route = origin.serve("/big.bin", body, hold_at=100_000)
    cache = readthrough.Cache(cache_dir)
    url = origin.url("/big.bin")
    f = cache.open(url)
    assert f.kind == "led" and f.length == len(body)
    if read_first:
        assert f.read(100) == body[:100]
    assert f.seek(-16, io.SEEK_END) == len(body) - 16
    got = {}

    def read_footer() -> None:
        got["footer"] = f.read(16)
        got["released"] = route.release.is_set()

    reader = threading.Thread(target=read_footer)
    reader.start()
    # The origin has sent only the first 100,000 bytes: the footer cannot be there
    # until the rest is released, so the read can only return after this.
    route.release.set()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert got == {"footer": body[-16:], "released": True}
    assert f.seek(50) == 50 and f.read(10) == body[50:60]
    f.close()
    assert origin.requests["/big.bin"] == 1
    assert cache.get_bytes(url) == body


def zip_of(files: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("stored", [False, True], ids=["cold", "hit"])
def test_zipfile_reads_a_member_of_an_open_blob(origin, cache_dir, stored):
    files = {"a.txt": b"alpha" * 1000, "dir/b.bin": blob(700_000, seed=7), "c.txt": b"gamma"}
    origin.serve("/archive.zip", zip_of(files))
    cache = readthrough.Cache(cache_dir)
    url = origin.url("/archive.zip")
    if stored:
        cache.path(url)
    with cache.open(url) as f, zipfile.ZipFile(f) as z:
        assert sorted(z.namelist()) == sorted(files)
        assert z.read("dir/b.bin") == files["dir/b.bin"]
        assert z.read("c.txt") == b"gamma"
    assert origin.requests["/archive.zip"] == 1


def test_seek_from_the_end_of_an_unknown_length_is_a_clear_error(cache_dir):
    release = threading.Event()

    def fetch(key: str):
        yield b"x" * 1000
        assert release.wait(WAIT)
        yield b"y" * 1000

    cache = readthrough.Cache(cache_dir, origin=fetch)
    with cache.open("k") as f:
        assert f.length is None
        with pytest.raises(io.UnsupportedOperation, match="length is not known") as raised:
            f.seek(-10, io.SEEK_END)
        assert isinstance(raised.value, OSError) and isinstance(raised.value, ValueError)
        assert f.tell() == 0
        assert f.seek(500, io.SEEK_CUR) == 500
        assert f.read(500) == b"x" * 500
        release.set()
        assert f.read() == b"y" * 1000
    with cache.open("k") as f:
        assert f.length == 2000
        assert f.seek(-10, io.SEEK_END) == 1990 and f.read() == b"y" * 10


def test_negative_positions_are_a_value_error(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"0123456789")
    with cache.open("k") as f:
        with pytest.raises(ValueError, match="negative seek position -1"):
            f.seek(-1)
        assert f.read(4) == b"0123"
        with pytest.raises(ValueError, match="negative seek position -1"):
            f.seek(-5, io.SEEK_CUR)
        with pytest.raises(ValueError, match="negative seek position -1"):
            f.seek(-11, io.SEEK_END)
        with pytest.raises(ValueError, match="invalid whence"):
            f.seek(0, 7)
        assert f.tell() == 4 and f.read() == b"456789"
    with pytest.raises(ValueError):
        cache.get_range("k", -1, 5)


def test_get_range_reads_part_of_a_blob(origin, cache_dir):
    body = blob(3 << 20, seed=9)
    origin.serve("/blob.bin", body)
    cache = readthrough.Cache(cache_dir)
    url = origin.url("/blob.bin")
    # A cold key is fetched whole (no ranged fills yet), and stored.
    assert cache.get_range(url, 1 << 20, (1 << 20) + 10) == body[1 << 20 : (1 << 20) + 10]
    assert cache.get_bytes(url) == body
    served = cache.stats().bytes_served
    assert cache.get_range(url, len(body) - 100, len(body)) == body[-100:]
    assert cache.stats().bytes_served - served == 100
    assert cache.get_range(url, len(body) - 5, len(body) + 100) == body[-5:]
    assert cache.get_range(url, 10, 10) == b""
    assert cache.get_range(url, 10, 5) == b""
    assert cache.get_range(url, len(body) + 1, len(body) + 10) == b""
    assert origin.requests["/blob.bin"] == 1
