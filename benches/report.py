#!/usr/bin/env python3
"""Prints the Performance table from the last bench run.

Reads criterion's estimates (target/criterion/<group>/<bench>/new/estimates.json; the
figure criterion prints: the slope for linear sampling, else the mean) and the
SUMMARY lines that the harness-less benches and benches/peers/nginx.sh printed into
RESULTS_DIR (default target/bench-results). Usage: benches/report.py [RESULTS_DIR]
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRIT = ROOT / "target" / "criterion"
RESULTS = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-results"


def est(group, bench):
    """Seconds per iteration, or None."""
    path = CRIT / group.replace("/", "_") / bench / "new" / "estimates.json"
    try:
        data = json.loads(path.read_text())
    except OSError:
        return None
    typical = data.get("slope") or data["mean"]
    return typical["point_estimate"] / 1e9


def t(s):
    if s is None:
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


def gibs(size, s):
    return f"{size / s / 2**30:.1f} GiB/s" if s else "n/a"


def mibs(size, s):
    return f"{size / s / 2**20:.0f} MiB/s" if s else "n/a"


def kps(s):
    return f"{1 / s / 1e3:.0f} K/s" if s else "n/a"


def verdict(ok):
    return "met" if ok else "**missed**"


def summary_lines(name):
    path = RESULTS / f"{name}.txt"
    if not path.exists():
        return []
    return [l for l in path.read_text().splitlines() if "SUMMARY" in l or l.startswith(("memory/", "scale:", "nginx", "readthrough", "  "))]


rows = []
row = lambda *cells: rows.append("| " + " | ".join(cells) + " |")

for label, size in (("256MiB", 256 << 20), ("1GiB", 1 << 30)):
    g = f"hit_large/{label}"
    rt, std, tok = (est(g, b) for b in ("readthrough_get_stream", "baseline_std_file_read_256k", "baseline_tokio_fs_read_256k"))
    if rt and std:
        row(f"hit, {label} blob streamed through a `Reader`", f"{t(rt)} ({gibs(size, rt)})",
            f"`std::fs` read loop (256 KiB): {t(std)} ({gibs(size, std)}); `tokio::fs`: {t(tok)} ({gibs(size, tok)})",
            f"{std / rt:.2f} of std; {tok / rt:.1f}x tokio::fs", f">= 0.9 of plain: {verdict(std / rt >= 0.9)}")

for label in ("4KiB", "64KiB"):
    g = f"hit_small/{label}"
    rt, std, cc = (est(g, b) for b in ("readthrough_get_bytes", "baseline_std_open_read_to_end", "peer_cacache_read"))
    if rt and std and cc:
        row(f"hit, {label} blobs, `get(key)` + `bytes()`", f"{t(rt)} ({kps(rt)})",
            f"`File::open` + `read_to_end`: {t(std)} ({kps(std)}); `cacache::read`: {t(cc)} ({kps(cc)})",
            f"{std / rt:.2f} of plain; {cc / rt:.1f}x cacache",
            f">= 0.5 of plain: {verdict(std / rt >= 0.5)}; >= 2x cacache: {verdict(cc / rt >= 2)}")

g = "miss_http_256MiB"
rt, plain, hashed = (est(g, b) for b in ("readthrough_get_cold", "baseline_reqwest_to_file", "baseline_reqwest_to_file_sha256"))
if rt and plain:
    row("miss, cold 256 MiB from a loopback HTTP origin (`HttpOrigin`)", f"{t(rt)} ({mibs(256 << 20, rt)})",
        f"reqwest to a file: {t(plain)} ({mibs(256 << 20, plain)}); plus SHA-256: {t(hashed)}",
        f"{plain / rt:.2f} of plain" + (f"; {hashed / rt:.2f} of plain+SHA-256" if hashed else ""),
        f">= 0.9 of plain: {verdict(plain / rt >= 0.9)}")

for g, blob, desc in (("cold_fill", 32 << 20, "32 MiB, 118 MiB/s origin"), ("cold_fill_slow", 16 << 20, "16 MiB, 8 MiB/s origin")):
    one = est(g, "tasks/1")
    for n in (10, 100, 1000):
        many = est(g, f"tasks/{n}")
        if one and many:
            row(f"cold fill ({desc}), {n} tasks on one key", f"{t(many)}, origin bytes 1.00x",
                f"1 task: {t(one)}" + (f" (origin alone {t(est(g, 'origin_only'))})" if est(g, "origin_only") else ""),
                f"{many / one:.2f}x", f"1000 tasks <= 1.2x: {verdict(many / one <= 1.2)}" if n == 1000 else "")

for line in summary_lines("multiprocess"):
    m = re.search(r"procs=(\d+).*median_ms=([-\d.]+).*max_ms=([-\d.]+)", line)
    if m:
        n, med, mx = m.groups()
        row(f"{n} processes on one cold key (64 MiB, ~2 s fill)", f"1 origin request, origin bytes 1.00x; followers' first byte {med} ms after the leader's (median; max {mx} ms)",
            "the leader's first byte", f"+{med} ms", f"<= 10 ms median: {verdict(float(med) <= 10)}")

for line in summary_lines("memory"):
    m = re.search(r"mode=(\w+).*baseline_mib=([\d.]+) peak_mib=([\d.]+) over_baseline_mib=([\d.]+)", line)
    if m:
        mode, base, peak, over = m.groups()
        what = "joined to one cold fill" if mode == "fill" else "on a hit"
        row(f"memory, 100 readers streaming one 2 GiB blob ({what})", f"peak RSS {peak} MiB",
            f"the same process before reading: {base} MiB", f"+{over} MiB", f"< 64 MiB over: {verdict(float(over) < 64)}")

sc = sorted(
    (int(p.parent.parent.name), est("hit_scale", f"entries/{p.parent.parent.name}"))
    for p in (CRIT / "hit_scale" / "entries").glob("*/new/estimates.json")
) if (CRIT / "hit_scale" / "entries").exists() else []
if len(sc) >= 2:
    (n0, t0), (n1, t1) = sc[0], sc[-1]
    row(f"hit latency, 64-byte blob, {n1:,} entries (criterion, one after the other)", t(t1), f"{n0:,} entries: {t(t0)}", f"{t1 / t0:.2f}x", f"<= 1.5x: {verdict(t1 / t0 <= 1.5)}")

for line in summary_lines("scale"):
    m = re.search(r"entries_small=(\d+) us=([\d.]+) entries_large=(\d+) us=([\d.]+) ratio=([\d.]+)", line)
    if m:
        n0, t0, n1, t1, r = m.groups()
        row(f"hit latency, 64-byte blob, {int(n1):,} entries (interleaved rounds, median)", f"{t1} µs",
            f"{int(n0):,} entries: {t0} µs", f"{r}x", f"<= 1.5x: {verdict(float(r) <= 1.5)}")

print("| benchmark | readthrough | baseline (same run) | ratio | target |")
print("| --- | --- | --- | --- | --- |")
print("\n".join(rows))
for name in ("nginx",):
    path = RESULTS / f"{name}.txt"
    if path.exists():
        print()
        print("nginx comparison (benches/peers/nginx.sh):")
        print(path.read_text().rstrip())
