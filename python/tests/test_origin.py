"""Custom origins written in Python: callables and objects, bytes and chunks, and
exceptions that reach every waiter."""

from __future__ import annotations

import threading

import pytest
import readthrough
from conftest import WAIT


class Boom(Exception):
    pass


def test_a_callable_and_an_object_with_fetch(cache_dir):
    calls = []

    def render(key: str) -> bytes:
        calls.append(key)
        return f"thumb of {key}".encode()

    cache = readthrough.Cache(cache_dir, origin=render)
    assert cache.get_bytes("thumb/42") == b"thumb of thumb/42"
    assert cache.get_bytes("thumb/42") == b"thumb of thumb/42"
    assert calls == ["thumb/42"]

    class Chunks:
        def fetch(self, key: str):
            yield b"ab"
            yield bytearray(b"cd")
            yield memoryview(b"ef")

    other = readthrough.Cache(cache_dir + "-2", origin=Chunks())
    assert other.get_bytes("k") == b"abcdef"
    with open(other.path("k"), "rb") as f:
        assert f.read() == b"abcdef"


def test_an_exception_reaches_every_waiter_and_the_next_read_fetches_again(cache_dir):
    readers = 8
    go = threading.Event()
    calls = []
    fail = [True]

    def origin(key: str):
        calls.append(key)
        yield b"first part"
        go.wait(WAIT)
        if fail[0]:
            raise Boom(f"no body for {key}")
        yield b" and the rest"

    cache = readthrough.Cache(cache_dir, origin=origin)
    opened = threading.Barrier(readers + 1, timeout=WAIT)
    results = [None] * readers

    def read(i: int) -> None:
        with cache.open("blob") as f:
            opened.wait()
            try:
                results[i] = f.read()
            except readthrough.Error as e:
                results[i] = e

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    opened.wait()
    go.set()
    for t in threads:
        t.join(WAIT)

    assert calls == ["blob"]
    for err in results:
        assert isinstance(err, readthrough.OriginError), err
        assert type(err.__cause__) is Boom
        assert str(err) == 'origin failed for key "blob": Boom: no body for blob'
        assert err.key == "blob"
    assert not cache.contains("blob")

    fail[0] = False
    assert cache.get_bytes("blob") == b"first part and the rest"
    assert calls == ["blob", "blob"]


def test_a_failed_body_fails_every_later_read(cache_dir):
    go = threading.Event()

    def origin(key: str):
        yield b"abc"
        go.wait(WAIT)
        raise Boom("cut off")

    cache = readthrough.Cache(cache_dir, origin=origin)
    with cache.open("k") as f:
        assert f.read(3) == b"abc"
        go.set()
        for _ in range(2):
            with pytest.raises(readthrough.OriginError, match="cut off"):
                f.read()
        with pytest.raises(readthrough.OriginError, match="cut off"):
            f.read(1)


def test_file_not_found_from_an_origin_is_not_found(cache_dir):
    def origin(key: str) -> bytes:
        raise FileNotFoundError(f"no thumb {key}")

    cache = readthrough.Cache(cache_dir, origin=origin)
    with pytest.raises(readthrough.NotFoundError) as caught:
        cache.get_bytes("thumb/7")
    assert isinstance(caught.value, FileNotFoundError)
    assert "thumb/7" in str(caught.value)


@pytest.mark.parametrize(
    "answer, message",
    [
        ("text", "returned str; return bytes"),
        (42, "returned int for key \"k\", not bytes or an iterable of bytes"),
        ([b"ok", 7], "yielded int, not bytes"),
    ],
)
def test_an_answer_that_is_not_bytes_is_an_origin_error(cache_dir, answer, message):
    cache = readthrough.Cache(cache_dir, origin=lambda key: answer)
    with pytest.raises(readthrough.OriginError, match=message) as caught:
        cache.get_bytes("k")
    assert isinstance(caught.value.__cause__, TypeError)


def test_an_origin_must_be_callable(cache_dir):
    with pytest.raises(TypeError, match="fetch"):
        readthrough.Cache(cache_dir, origin=42)
