//! Not a measurement: the throttled loopback origin that `benches/peers/nginx.sh` and
//! `benches/peers/serve_nginx.sh` put nginx and readthrough in front of.
//!
//! `peer_origin serve SIZE_MIB FILL_SECS PORT_FILE COUNT_FILE [SMALL_BYTES]` serves
//! `/blob` (any query string) with SIZE_MIB MiB in 1 MiB pieces, paced so one response
//! takes about FILL_SECS seconds, and `/small` (any query string) with SMALL_BYTES
//! bytes (default 4096) at once, on 127.0.0.1 (a free port, written to PORT_FILE).
//! Every 20 ms it writes the number of requests `/blob` has received to COUNT_FILE,
//! and those `/small` has received to COUNT_FILE.small. It runs until its standard
//! input closes. Run without arguments (as `cargo bench` does) it
//! serves a small blob once to itself and exits.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::http_server::{Behaviour, Server};
use tokio::io::AsyncReadExt;

const PIECE: usize = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) != Some("serve") {
        println!(
            "peer_origin: a helper for benches/peers/*.sh (serve SIZE_MIB FILL_SECS PORT_FILE COUNT_FILE [SMALL_BYTES])"
        );
        return;
    }
    let size: usize = args[1].parse::<usize>().expect("SIZE_MIB") * 1024 * 1024;
    let fill: f64 = args[2].parse().expect("FILL_SECS");
    let (port_file, count_file) = (args[3].clone(), args[4].clone());
    let small: usize = args
        .get(5)
        .map_or(4096, |a| a.parse().expect("SMALL_BYTES"));
    let small_count_file = format!("{count_file}.small");
    rt.block_on(async move {
        let server = Server::start().await;
        let pieces = size.div_ceil(PIECE).max(2);
        let delay = Duration::from_secs_f64(fill / (pieces - 1) as f64);
        server.route(
            "/blob",
            Behaviour::body(common::body(11, size))
                .chunk(PIECE)
                .delay(delay)
                .etag("\"peer-blob-v1\""),
        );
        server.route(
            "/small",
            Behaviour::body(common::body(12, small)).etag("\"peer-small-v1\""),
        );
        std::fs::write(&port_file, server.addr().port().to_string()).expect("port file");
        let tmp = format!("{count_file}.tmp");
        // Each count is written to a tmp file and renamed, so a reader never sees half.
        let write_counts = || {
            for (path, file) in [("/blob", &count_file), ("/small", &small_count_file)] {
                std::fs::write(&tmp, server.count(path).to_string()).expect("count file");
                std::fs::rename(&tmp, file).expect("count file");
            }
        };
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            write_counts();
            tokio::select! {
                n = stdin.read(&mut buf) => if n.map_or(true, |n| n == 0) { break },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        write_counts();
    });
}
