//! `readthrough`: warm a cache from URLs, read through it, inspect and maintain it.
//!
//! A thin layer over the library: every command is one or two library calls.

mod output;
mod report;
mod serve;
mod tier;
mod warm;

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use readthrough::{ByteRange, Cache, Durability, HttpOrigin, PrunePolicy, UrlOrigin};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Warm a shared blob cache from URLs (http, https, s3), read through it, inspect and
/// maintain it.
#[derive(Parser)]
#[command(name = "readthrough", version)]
struct Cli {
    /// The cache directory [default: $READTHROUGH_DIR, else the platform cache
    /// directory's `readthrough`]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Take over another process's fill after it makes no progress for this long
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    stale_after: Duration,
    /// Read ranges of blobs that are not stored by slices of this size (e.g. 8MiB),
    /// fetching only the slices a range covers
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    slice_size: Option<u64>,
    /// When blobs are flushed to disk: background (publish at once, flush just after;
    /// a blob the process or the machine left unflushed is checked after a restart),
    /// fsync (before publishing), or off [default: $READTHROUGH_DURABILITY, else
    /// background]
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_durability)]
    durability: Option<Durability>,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log what the cache does to stderr
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(flatten)]
    tier: tier::Options,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream a URL's body through the cache to stdout, or to a file
    Get {
        url: String,
        /// Write to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only these bytes, in HTTP Range syntax: 0-1023, 1048576- or -65536 (the last 64 KiB)
        #[arg(long, value_name = "SPEC", allow_hyphen_values = true)]
        range: Option<ByteRange>,
    },
    /// Fetch URLs into the cache, several at a time (each URL once)
    Warm(warm::Args),
    /// Make sure a URL is cached and print the path of its complete file
    Path { url: String },
    /// List the entries: size, bytes present (a blob read by slices may hold only
    /// some), created, last read, expires, key
    Ls {
        /// Print one JSON array
        #[arg(long)]
        json: bool,
    },
    /// Count entries, bytes, fills in progress and abandoned tmp files
    Stat {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove entries by key
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Remove abandoned files, then evict to a size or an age
    Prune {
        /// Evict the least recently read entries until the cache holds at most this (e.g. 512MiB, 10G)
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Evict entries stored longer ago than this (e.g. 7d, 12h)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Check every entry's length and SHA-256; remove and report corrupt ones
    Verify {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Serve upstream URLs over HTTP through the cache (a caching reverse proxy)
    Serve(serve::Args),
    /// Look after the shared tier (--shared-tier)
    #[command(subcommand)]
    Tier(tier::Command),
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>().map(|size| size.as_u64())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line: what was wrong (clap's first paragraph). `--help` shows the rest.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "readthrough: {}",
                first.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let ansi = std::io::stderr().is_terminal();
    if cli.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter("readthrough=debug")
            .init();
    } else {
        // `serve` logs each request (its access log) unless quiet.
        let serving = matches!(cli.command, Command::Serve(_)) && !cli.quiet;
        let filter = if serving {
            "readthrough=warn,readthrough::access=info"
        } else {
            "readthrough=warn"
        };
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .without_time()
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("readthrough: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ran = runtime.block_on(run(cli));
    // Exit without waiting for the background flush of what was published: a blob it
    // did not reach stays marked unflushed, and is checked if the machine restarts
    // before the kernel writes it out.
    runtime.shutdown_background();
    match ran {
        Ok(code) => code,
        Err(e) => {
            eprintln!("readthrough: {}", report::line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A `--durability` mode.
fn parse_durability(text: &str) -> std::result::Result<Durability, String> {
    match text {
        "background" => Ok(Durability::Background),
        "fsync" => Ok(Durability::Fsync),
        "off" => Ok(Durability::Off),
        _ => Err(format!("{text:?} is not one of background, fsync, off")),
    }
}

/// The durability: the flag, else `READTHROUGH_DURABILITY`, else background.
fn durability(flag: Option<Durability>) -> Result<Durability> {
    if let Some(durability) = flag {
        return Ok(durability);
    }
    match std::env::var("READTHROUGH_DURABILITY") {
        Ok(text) => {
            parse_durability(&text).map_err(|e| anyhow::anyhow!("READTHROUGH_DURABILITY: {e}"))
        }
        Err(_) => Ok(Durability::Background),
    }
}

/// The cache directory: the flag, else `READTHROUGH_DIR`, else the platform's.
fn cache_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag.or_else(|| std::env::var_os("READTHROUGH_DIR").map(PathBuf::from)) {
        return Ok(dir);
    }
    let base =
        dirs::cache_dir().context("no cache directory: pass --cache-dir or set READTHROUGH_DIR")?;
    Ok(base.join("readthrough"))
}

async fn open(cli: &Cli) -> Result<Cache> {
    let dir = cache_dir(cli.cache_dir.clone())?;
    let mut origin = UrlOrigin::new(HttpOrigin::new()?);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        origin = origin.s3_endpoint(endpoint);
    }
    let mut builder = Cache::builder(dir)
        .origin(origin)
        .stale_after(cli.stale_after)
        .durability(durability(cli.durability)?);
    if let Some(size) = cli.slice_size {
        builder = builder.slice_size(size);
    }
    Ok(cli.tier.apply(builder)?.build().await?)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let cache = open(&cli).await?;
    match &cli.command {
        Command::Get { url, output, range } => {
            get(&cache, url, *range, output.as_deref()).await?;
            if range.is_some() {
                // The range is out; the fill it started (of the whole blob, or of
                // its slices) stores what it fetched before the process ends, so the
                // next read is a hit.
                cache.fills_ended().await;
            }
        }
        Command::Warm(args) => return warm::run(&cache, args, cli.quiet).await,
        Command::Path { url } => {
            UrlOrigin::check(url).map_err(|e| report::about(url, e))?;
            let path = cache.path(url).await.map_err(|e| report::about(url, e))?;
            println!("{}", path.display());
        }
        Command::Ls { json } => ls(&cache, *json).await?,
        Command::Stat { json } => stat(&cache, *json, cli.tier.url()).await?,
        Command::Rm { keys } => return rm(&cache, keys, cli.quiet).await,
        Command::Prune {
            max_size,
            older_than,
        } => {
            let mut policy = PrunePolicy::default();
            policy.max_bytes = *max_size;
            policy.older_than = *older_than;
            let report = cache.prune(&policy).await?;
            if !cli.quiet {
                eprintln!(
                    "pruned {} entries, {} tmp files, {} lock files; freed {}",
                    report.removed.len(),
                    report.tmp_files_removed,
                    report.lock_files_removed,
                    bytesize::ByteSize(report.bytes_freed)
                );
            }
        }
        Command::Verify { json } => return verify(&cache, *json, cli.quiet).await,
        Command::Serve(args) => serve::run(cache, args, cli.quiet).await?,
        Command::Tier(command) => tier::run(&cache, command, cli.quiet).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams a body (or the `range` of it) to stdout or a file as it arrives. A reader
/// that closes stdout early (`| head`) ends it quietly; the fill it led is then
/// abandoned.
async fn get(
    cache: &Cache,
    url: &str,
    range: Option<ByteRange>,
    output: Option<&Path>,
) -> Result<()> {
    UrlOrigin::check(url).map_err(|e| report::about(url, e))?;
    let read = || async {
        match range {
            Some(range) => cache.get_range(url, range).await,
            None => cache.get(url).await,
        }
    };
    let Some(path) = output else {
        let mut reader = read().await.map_err(|e| report::about(url, e))?;
        if let Some(file) = reader.stored_file() {
            return match kernel_copy(file, None).await {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
                Ok(()) => Ok(()),
            };
        }
        return match copy(&mut reader, tokio::io::stdout()).await {
            Err(Copy::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(Copy::Write(e)) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
            Err(Copy::Read(e)) => Err(report::about(url, e)),
            Ok(()) => Ok(()),
        };
    };
    let file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    let copied = match read().await {
        Ok(mut reader) => match reader.stored_file() {
            Some(stored) => kernel_copy(stored, Some(file.into_std().await))
                .await
                .with_context(|| format!("cannot write {}", path.display())),
            None => copy(&mut reader, file).await.map_err(|e| match e {
                Copy::Read(e) => report::about(url, e),
                Copy::Write(e) => {
                    anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
                }
            }),
        },
        Err(e) => Err(report::about(url, e)),
    };
    if copied.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    copied
}

/// Copies a stored blob to `out`, or to stdout, on a blocking thread, with the
/// kernel's help ([`output::copy_stored`]).
async fn kernel_copy(stored: &std::fs::File, out: Option<std::fs::File>) -> std::io::Result<()> {
    let stored = stored.try_clone()?;
    tokio::task::spawn_blocking(move || match out {
        Some(out) => output::copy_stored(&stored, out.as_fd()),
        None => output::copy_stored(&stored, std::io::stdout().as_fd()),
    })
    .await?
}

/// Where a copy failed.
enum Copy {
    Read(readthrough::Error),
    Write(std::io::Error),
}

async fn copy(
    reader: &mut readthrough::Reader,
    mut out: impl tokio::io::AsyncWrite + Unpin,
) -> Result<(), Copy> {
    while let Some(chunk) = reader.next().await {
        let chunk = chunk.map_err(Copy::Read)?;
        out.write_all(&chunk).await.map_err(Copy::Write)?;
        out.flush().await.map_err(Copy::Write)?;
    }
    Ok(())
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn ls(cache: &Cache, as_json: bool) -> Result<()> {
    let mut entries = cache.entries().await?;
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let slices = e.slices.map(|s| json!({"size": s.size, "present": s.present, "count": s.count}));
                json!({
                    "key": e.key, "size": e.size, "present": e.present, "stored": e.stored, "slices": slices,
                    "created": unix_seconds(e.created), "last_read": unix_seconds(e.last_read),
                    "expires": e.expires.map(unix_seconds), "sha256": e.sha256,
                    "validator": e.validator, "content_type": e.content_type, "path": e.path,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>10}  {:>10}  {:<20}  {:<20}  {:<20}  KEY",
        "SIZE", "PRESENT", "CREATED", "LAST-READ", "EXPIRES"
    )?;
    let time = |at| humantime::format_rfc3339_seconds(at).to_string();
    for e in &entries {
        let (size, present) = (bytesize::ByteSize(e.size), bytesize::ByteSize(e.present));
        let expires = e.expires.map_or_else(|| "never".to_owned(), time);
        writeln!(
            out,
            "{:>10}  {:>10}  {:<20}  {:<20}  {expires:<20}  {}",
            size.to_string(),
            present.to_string(),
            time(e.created),
            time(e.last_read),
            e.key
        )?;
    }
    Ok(())
}

async fn stat(cache: &Cache, as_json: bool, tier_url: Option<String>) -> Result<()> {
    let status = cache.status().await?;
    let tier = match &tier_url {
        Some(url) => Some(tier::figures(cache, url).await?),
        None => None,
    };
    let value = json!({
        "dir": cache.dir(), "entries": status.entries, "bytes": status.bytes,
        "fills_in_progress": status.fills_in_progress,
        "abandoned_tmp_files": status.abandoned_tmp_files, "abandoned_bytes": status.abandoned_bytes,
        "shared_tier": tier,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("dir                  {}", cache.dir().display());
        println!("entries              {}", status.entries);
        println!("bytes                {}", bytesize::ByteSize(status.bytes));
        println!("fills in progress    {}", status.fills_in_progress);
        println!(
            "abandoned tmp files  {} ({})",
            status.abandoned_tmp_files,
            bytesize::ByteSize(status.abandoned_bytes)
        );
        if let Some(tier) = &tier {
            println!(
                "shared tier          {}",
                tier["url"].as_str().unwrap_or_default()
            );
            println!(
                "shared tier copies   {} ({})",
                tier["copies"],
                bytesize::ByteSize(tier["bytes"].as_u64().unwrap_or_default())
            );
        }
    }
    Ok(())
}

async fn rm(cache: &Cache, keys: &[String], quiet: bool) -> Result<ExitCode> {
    let mut missing = 0;
    for key in keys {
        if cache.remove(key).await? {
            if !quiet {
                eprintln!("removed {key}");
            }
        } else {
            eprintln!("readthrough: {key}: not in the cache");
            missing += 1;
        }
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn verify(cache: &Cache, as_json: bool, quiet: bool) -> Result<ExitCode> {
    let report = cache.verify().await?;
    if as_json {
        let corrupt: Vec<_> = report
            .corrupt
            .iter()
            .map(|c| json!({"key": c.key, "path": c.path, "reason": c.reason}))
            .collect();
        let value = json!({"checked": report.checked, "corrupt": corrupt, "unverifiable": report.unverifiable});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for c in &report.corrupt {
            eprintln!("readthrough: {}: corrupt ({}), removed", c.key, c.reason);
        }
        for path in &report.unverifiable {
            eprintln!(
                "readthrough: {}: no metadata to check it against",
                path.display()
            );
        }
        if !quiet {
            eprintln!(
                "checked {} entries, {} corrupt",
                report.checked,
                report.corrupt.len()
            );
        }
    }
    Ok(if report.corrupt.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
