//! The server's counters, and `/-/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::stats::Stats;

/// What the server has done since it started.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Responses by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Body bytes sent to clients.
    bytes_sent: AtomicU64,
    /// Upstream fetches this process has started whose bodies are still open.
    fetches_in_flight: AtomicU64,
    /// Open client connections.
    connections: AtomicU64,
}

/// Holds one count of a gauge of the metrics up while it lives.
pub(crate) struct Held {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &AtomicU64,
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::Relaxed);
    }
}

fn hold(metrics: &Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicU64) -> Held {
    gauge(metrics).fetch_add(1, Ordering::Relaxed);
    Held {
        metrics: Arc::clone(metrics),
        gauge,
    }
}

impl Metrics {
    pub(crate) fn responded(&self, status: u16) {
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry(status).or_default() += 1;
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts an upstream fetch as in flight until the guard drops.
    pub(crate) fn fetch(self: &Arc<Self>) -> Held {
        hold(self, |m| &m.fetches_in_flight)
    }

    /// Counts a client connection as open until the guard drops.
    pub(crate) fn connection(self: &Arc<Self>) -> Held {
        hold(self, |m| &m.connections)
    }

    /// The metrics in the Prometheus text format, with the cache's counters `stats`.
    pub(crate) fn render(&self, stats: &Stats) -> String {
        let mut out = String::new();
        for (name, value, help) in cache_counters(stats)
            .into_iter()
            .chain(tier_counters(stats))
        {
            let name = format!("readthrough_cache_{name}_total");
            metric(&mut out, &name, "counter", help, value);
        }
        let name = "readthrough_http_responses_total";
        let _ = writeln!(out, "# HELP {name} Responses by status code");
        let _ = writeln!(out, "# TYPE {name} counter");
        let responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        for (status, count) in responses.iter() {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {count}");
        }
        for (name, kind, help, value) in [
            (
                "readthrough_http_sent_bytes_total",
                "counter",
                "Body bytes sent to clients",
                &self.bytes_sent,
            ),
            (
                "readthrough_fills_in_flight",
                "gauge",
                "Upstream fetches running in this process",
                &self.fetches_in_flight,
            ),
            (
                "readthrough_http_connections",
                "gauge",
                "Open client connections",
                &self.connections,
            ),
        ] {
            metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        out
    }
}

/// The cache's counters: name, value, help.
fn cache_counters(stats: &Stats) -> [(&'static str, u64, &'static str); 10] {
    [
        ("hits", stats.hits, "Reads served from a stored blob"),
        ("misses", stats.misses, "Reads that found no stored blob"),
        ("fills_led", stats.fills_led, "Fills this process fetched"),
        (
            "fills_joined",
            stats.fills_joined,
            "Reads that joined a fill here",
        ),
        (
            "fills_followed",
            stats.fills_followed,
            "Fills another process fetched",
        ),
        (
            "stale_reclaims",
            stats.stale_reclaims,
            "Stalled fills taken over",
        ),
        (
            "revalidations",
            stats.revalidations,
            "Expired blobs confirmed current",
        ),
        (
            "origin_bytes",
            stats.origin_bytes,
            "Bytes received from upstreams",
        ),
        (
            "served_bytes",
            stats.bytes_served,
            "Bytes read out of the cache",
        ),
        ("errors", stats.errors, "Reads that ended in an error"),
    ]
}

/// The shared tier's counters among the cache's (all 0 without a tier).
fn tier_counters(stats: &Stats) -> [(&'static str, u64, &'static str); 7] {
    [
        (
            "tier_hits",
            stats.tier_hits,
            "Fills served from the shared tier",
        ),
        (
            "tier_misses",
            stats.tier_misses,
            "Fills that found no copy in the shared tier",
        ),
        (
            "tier_lease_waits",
            stats.tier_lease_waits,
            "Fills that followed another host's upload",
        ),
        (
            "tier_takeovers",
            stats.tier_takeovers,
            "Fleet leases taken over from a stalled host",
        ),
        (
            "tier_read_bytes",
            stats.tier_bytes_read,
            "Bytes read from the shared tier",
        ),
        (
            "tier_written_bytes",
            stats.tier_bytes_written,
            "Bytes uploaded to the shared tier",
        ),
        (
            "tier_errors",
            stats.tier_errors,
            "Shared tier calls that failed (read from the upstream instead)",
        ),
    ]
}

/// One metric of `kind` (counter, gauge) with its help line.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}
