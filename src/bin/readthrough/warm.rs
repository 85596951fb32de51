//! `readthrough warm`: fetch many URLs into the cache, some at a time, with progress
//! bars on a terminal.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use futures::{StreamExt, stream};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use readthrough::{Cache, ReadKind, UrlOrigin};
use serde_json::json;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// URLs to fetch
    urls: Vec<String>,
    /// Also fetch the URLs in this file, one a line ("-" reads stdin); blank lines and
    /// lines starting with '#' are skipped
    #[arg(long, value_name = "FILE")]
    from: Option<String>,
    /// How many URLs to fetch at once
    #[arg(long, short, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Print one JSON summary on stdout
    #[arg(long)]
    json: bool,
}

/// How one URL went.
enum Warmed {
    Fetched(u64),
    Cached,
}

pub(crate) async fn run(cache: &Cache, args: &Args, quiet: bool) -> Result<ExitCode> {
    let urls = urls(args)?;
    if urls.is_empty() {
        eprintln!("readthrough: no URLs to warm: name some, or pass --from FILE");
        return Ok(ExitCode::from(2));
    }
    let started = Instant::now();
    let progress = Progress::new(urls.len(), !quiet && std::io::stderr().is_terminal());
    let results: Vec<(String, Result<Warmed>)> = stream::iter(urls)
        .map(|url| async {
            let result = warm_one(cache, &url, &progress).await;
            progress.item_done();
            (url, result)
        })
        .buffer_unordered(args.jobs.into())
        .collect()
        .await;
    progress.finish();

    let (mut fetched, mut cached, mut bytes) = (0, 0, 0);
    let mut failures = Vec::new();
    for (url, result) in results {
        match result {
            Ok(Warmed::Fetched(n)) => (fetched, bytes) = (fetched + 1, bytes + n),
            Ok(Warmed::Cached) => cached += 1,
            Err(e) => {
                let error = crate::report::cause(&e, &url);
                eprintln!("readthrough: {url}: {error}");
                failures.push(json!({"url": url, "error": error}));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let summary = json!({
            "fetched": fetched, "cached": cached, "failed": failures.len(),
            "bytes": bytes, "seconds": seconds, "failures": failures,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if !quiet {
        let total = fetched + cached + failures.len();
        let plural = if total == 1 { "" } else { "s" };
        eprintln!(
            "warmed {total} URL{plural} in {seconds:.1}s: {fetched} fetched ({}), {cached} already cached, {} failed",
            ByteSize(bytes),
            failures.len()
        );
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The URLs named on the command line and in `--from`, each once, in order.
fn urls(args: &Args) -> Result<Vec<String>> {
    let mut all: Vec<String> = args.urls.iter().map(|url| url.trim().to_owned()).collect();
    if let Some(from) = &args.from {
        let lines: Vec<String> = if from == "-" {
            std::io::stdin()
                .lock()
                .lines()
                .collect::<Result<_, _>>()
                .context("cannot read URLs from stdin")?
        } else {
            let file = std::fs::File::open(from).with_context(|| format!("cannot read {from}"))?;
            std::io::BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read {from}"))?
        };
        all.extend(
            lines
                .into_iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        );
    }
    let mut seen = HashSet::new();
    all.retain(|url| seen.insert(url.clone()));
    Ok(all)
}

async fn warm_one(cache: &Cache, url: &str, progress: &Progress) -> Result<Warmed> {
    UrlOrigin::check(url)?;
    // A servable blob is a hit (an expired one is not: it is fetched again).
    let mut reader = cache.get(url).await?;
    if reader.kind() == ReadKind::Hit {
        return Ok(Warmed::Cached);
    }
    let bar = progress.download(url, reader.len());
    let mut bytes = 0;
    while let Some(chunk) = reader.next().await {
        let n = chunk?.len() as u64;
        bytes += n;
        progress.bytes(&bar, n);
    }
    bar.finish_and_clear();
    // A fill has ended once its whole body has been read.
    if !cache.contains(url).await? {
        bail!("fetched, but it could not be stored (see the warnings above)");
    }
    Ok(Warmed::Fetched(bytes))
}

/// The progress bars: one overall (URLs and bytes, rate, ETA) and one per active
/// download. All hidden when stderr is not a terminal or with `--quiet`.
struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    started: Instant,
    bytes: std::sync::atomic::AtomicU64,
    shown: bool,
}

impl Progress {
    fn new(items: usize, shown: bool) -> Self {
        let multi = MultiProgress::new();
        if !shown {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let overall = multi.add(ProgressBar::new(items as u64));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} URLs  {msg}  ETA {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        overall.enable_steady_tick(Duration::from_millis(200));
        Progress {
            multi,
            overall,
            started: Instant::now(),
            bytes: Default::default(),
            shown,
        }
    }

    fn download(&self, url: &str, len: Option<u64>) -> ProgressBar {
        let bar = self.multi.add(match len {
            Some(len) => ProgressBar::new(len),
            None => ProgressBar::no_length(),
        });
        bar.set_style(
            ProgressStyle::with_template(
                "  {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}  {wide_msg}",
            )
            .expect("a valid template"),
        );
        bar.set_message(url.to_owned());
        bar
    }

    fn bytes(&self, bar: &ProgressBar, n: u64) {
        bar.inc(n);
        let total = self
            .bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed)
            + n;
        if self.shown {
            let rate = total as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            self.overall
                .set_message(format!("{}  {}/s", ByteSize(total), ByteSize(rate as u64)));
        }
    }

    fn item_done(&self) {
        self.overall.inc(1);
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
