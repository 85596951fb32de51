"""Bad directories, keys, URLs and settings, and an origin's 404, raise the documented
exceptions with one-line messages."""

from __future__ import annotations

import pytest
import readthrough


def test_a_directory_that_is_a_file(tmp_path):
    file = tmp_path / "not-a-dir"
    file.write_bytes(b"x")
    with pytest.raises(readthrough.BadDirectoryError) as caught:
        readthrough.Cache(file)
    message = str(caught.value)
    assert str(file) in message and "\n" not in message


def test_a_404_is_not_found_and_a_file_not_found_error(origin, cache_dir):
    cache = readthrough.Cache(cache_dir)
    url = origin.url("/missing.bin")
    with pytest.raises(readthrough.NotFoundError) as caught:
        cache.get_bytes(url)
    err = caught.value
    assert isinstance(err, readthrough.OriginError) and isinstance(err, FileNotFoundError)
    assert (err.status, err.key) == (404, url)
    assert url in str(err) and "404" in str(err)
    with pytest.raises(FileNotFoundError):
        cache.open(url)
    assert origin.requests["/missing.bin"] == 2


@pytest.mark.parametrize("url", ["ftp://example.com/a.bin", "not a url", "s3://"])
def test_a_bad_url_is_invalid_before_any_fetch(cache_dir, url):
    cache = readthrough.Cache(cache_dir)
    with pytest.raises(readthrough.InvalidUrlError) as caught:
        cache.path(url)
    assert isinstance(caught.value, ValueError)
    assert caught.value.key == url and url in str(caught.value)


def test_an_empty_key(cache_dir):
    cache = readthrough.Cache(cache_dir, origin=lambda key: b"")
    with pytest.raises(readthrough.InvalidKeyError, match="empty"):
        cache.get_bytes("")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"stale_after": -1}, "stale_after must be a number of seconds"),
        ({"stale_after": 0}, "stale_after must be at least 1 ms"),
        ({"stale_after": "soon"}, "stale_after must be a number of seconds or a timedelta"),
        ({"default_ttl": 0}, "default TTL of zero"),
        ({"max_bytes": "lots"}, '"lots" is not a size'),
        ({"max_bytes": 0}, "max_bytes of zero would keep nothing"),
        ({"max_bytes": -5}, "max_bytes must be a number of bytes"),
        ({"durability": "sometimes"}, 'durability must be "background", "fsync" or "off"'),
    ],
)
def test_a_setting_that_cannot_work(cache_dir, settings, message):
    with pytest.raises(readthrough.InvalidSettingError, match=message):
        readthrough.Cache(cache_dir, **settings)


def test_the_exceptions_form_one_hierarchy():
    for name in readthrough._errors.__all__:
        cls = getattr(readthrough, name)
        assert issubclass(cls, readthrough.Error) and cls.__module__ == "readthrough"
