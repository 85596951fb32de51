"""`Cache.open` streams while the fill runs, and its file object serves the standard
library's readers."""

from __future__ import annotations

import io
import shutil
import tarfile

import pytest
import readthrough
from conftest import blob


def test_open_returns_first_bytes_before_the_fill_ends(origin, cache_dir):
    body = blob(2 << 20)
    route = origin.serve("/big.bin", body, hold_at=100_000)
    cache = readthrough.Cache(cache_dir)
    with cache.open(origin.url("/big.bin")) as f:
        assert (f.kind, f.length) == ("led", len(body))
        head = bytearray()
        while len(head) < 100_000:
            chunk = f.read(100_000 - len(head))
            assert chunk, "the body ended early"
            head += chunk
        # The origin has sent no more: these bytes came while the fill was running.
        assert not route.release.is_set()
        assert bytes(head) == body[:100_000]
        assert not cache.contains(origin.url("/big.bin"))
        route.release.set()
        assert f.read() == body[100_000:]
    assert cache.contains(origin.url("/big.bin"))


@pytest.mark.parametrize("how", ["read()", "read(n) then read(1)", "get_bytes"])
def test_a_read_that_reaches_the_end_of_a_fill_it_leads_ends_once_the_blob_is_stored(
    origin, cache_dir, how
):
    body = blob(3 << 20, seed=5)
    url = origin.url("/whole.bin")
    origin.serve("/whole.bin", body)
    cache = readthrough.Cache(cache_dir)
    if how == "get_bytes":
        assert cache.get_bytes(url) == body
    else:
        with cache.open(url) as f:
            assert f.kind == "led"
            if how == "read()":
                assert f.read() == body
            else:
                assert f.read(len(body)) == body
                assert f.read(1) == b""
    # The end of the body is the end of the fill: a process that exits now leaves the
    # blob stored, not a fill for another process to fetch again.
    assert cache.contains(url)
    assert origin.requests["/whole.bin"] == 1


def tar_of(files: dict) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("stored", [False, True], ids=["filling", "hit"])
def test_tarfile_reads_an_open_blob(cache_dir, stored):
    files = {"a.txt": b"alpha" * 1000, "dir/b.bin": blob(300_000)}
    archive = tar_of(files)
    cache = readthrough.Cache(cache_dir, origin=lambda key: iter([archive[:5000], archive[5000:]]))
    if stored:
        cache.path("shard.tar")
    with cache.open("shard.tar") as f, tarfile.open(fileobj=f) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    assert got == files


def test_copyfileobj_and_buffered_reader(cache_dir, tmp_path):
    body = blob(1 << 20, seed=3)
    cache = readthrough.Cache(cache_dir, origin=lambda key: body)
    target = tmp_path / "copy.bin"
    with cache.open("k") as f, open(target, "wb") as out:
        shutil.copyfileobj(f, out)
    assert target.read_bytes() == body
    with io.BufferedReader(cache.open("k")) as f:
        assert f.read(10) == body[:10]
        assert f.readline() == body[10 : body.index(b"\n", 10) + 1]


def test_seek_goes_forward_and_back_anywhere(cache_dir):
    body = blob(3 << 20)
    cache = readthrough.Cache(cache_dir, origin=lambda key: body)
    with cache.open("k") as f:
        assert f.seekable()
        assert f.read(100) == body[:100]
        assert f.seek(10) == 10
        assert f.read(5) == body[10:15]
        assert f.seek(5000, io.SEEK_CUR) == 5015
        assert f.read(3) == body[5015:5018]
        assert f.seek(-10, io.SEEK_END) == len(body) - 10
        assert f.tell() == len(body) - 10
        assert f.read() == body[-10:]
        assert f.seek(0) == 0
        assert f.read(7) == body[:7]
    with pytest.raises(ValueError):
        f.read(1)
