"""The fleet tier from Python: two cache directories (two hosts) over one shared
folder make one origin request between them."""

from __future__ import annotations

import pytest
import readthrough
from conftest import blob


def test_a_second_host_reads_the_first_hosts_copy_from_the_tier(origin, tmp_path):
    body = blob(3 << 20, seed=11)
    origin.serve("/shared.bin", body)
    url = origin.url("/shared.bin")
    tier = f"file://{tmp_path / 'tier'}"
    first = readthrough.Cache(str(tmp_path / "host-a"), shared_tier=tier)
    assert first.get_bytes(url) == body
    second = readthrough.Cache(str(tmp_path / "host-b"), shared_tier=tier)
    assert second.get_bytes(url) == body
    assert origin.requests["/shared.bin"] == 1
    assert second.stats().tier_hits == 1


def test_a_read_only_tier_is_never_written(origin, tmp_path):
    origin.serve("/ro.bin", b"read only")
    tier = tmp_path / "tier"
    cache = readthrough.Cache(
        str(tmp_path / "host"), shared_tier=f"file://{tier}", shared_tier_read_only=True
    )
    assert cache.get_bytes(origin.url("/ro.bin")) == b"read only"
    assert [p for p in tier.rglob("*") if p.is_file()] == []


def test_a_bad_tier_url_is_refused_with_its_reason(tmp_path):
    with pytest.raises(readthrough.InvalidUrlError, match="ftp://"):
        readthrough.Cache(str(tmp_path / "c"), shared_tier="ftp://host/x")
    with pytest.raises(readthrough.InvalidSettingError, match="slice_size"):
        readthrough.Cache(str(tmp_path / "c"), slice_size="lots")
