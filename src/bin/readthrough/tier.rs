//! The shared tier: its URL (`--shared-tier`), and `readthrough tier ls | prune`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use readthrough::{Cache, CacheBuilder};
use serde_json::json;

/// How the CLI reaches the shared tier.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// A shared tier below the cache, for a fleet of hosts: s3://bucket/prefix,
    /// gs://bucket/prefix, az://container/prefix or file:///path (a shared volume)
    /// [default: $READTHROUGH_SHARED_TIER]
    #[arg(long, global = true, value_name = "URL")]
    shared_tier: Option<String>,
    /// Read the shared tier but never write to it (a tier others fill)
    #[arg(long, global = true)]
    shared_tier_read_only: bool,
    /// The size of the parts blobs are uploaded to the shared tier in
    #[arg(long, global = true, value_name = "SIZE", default_value = "8MiB", value_parser = crate::parse_size)]
    shared_tier_part_size: u64,
    /// How long one call to the shared tier may take before a read goes on without it
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    shared_tier_timeout: Duration,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List the blobs published in the shared tier
    Ls {
        /// Print one JSON array
        #[arg(long)]
        json: bool,
    },
    /// Remove expired copies, copies older than --older-than, and abandoned uploads
    Prune {
        /// Remove copies published longer ago than this (e.g. 7d, 12h)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
}

impl Options {
    /// The tier's URL: the flag, else `READTHROUGH_SHARED_TIER`.
    pub(crate) fn url(&self) -> Option<String> {
        self.shared_tier
            .clone()
            .or_else(|| std::env::var("READTHROUGH_SHARED_TIER").ok())
            .filter(|url| !url.is_empty())
    }

    /// `builder` with the shared tier, when one is named.
    pub(crate) fn apply(&self, builder: CacheBuilder) -> Result<CacheBuilder> {
        let Some(url) = self.url() else {
            return Ok(builder);
        };
        let (store, prefix) = readthrough::tier_store(&url)?;
        let builder = if self.shared_tier_read_only {
            builder.shared_tier_read_only(store, prefix)
        } else {
            builder.shared_tier(store, prefix)
        };
        Ok(builder
            .tier_part_size(self.shared_tier_part_size)
            .tier_timeout(self.shared_tier_timeout))
    }
}

pub(crate) async fn run(cache: &Cache, command: &Command, quiet: bool) -> Result<()> {
    match command {
        Command::Ls { json } => ls(cache, *json).await,
        Command::Prune { older_than } => {
            let report = cache.tier_prune(*older_than).await?;
            if !quiet {
                eprintln!(
                    "pruned {} copies and {} abandoned uploads from the shared tier; freed {}",
                    report.removed.len(),
                    report.orphans_removed,
                    bytesize::ByteSize(report.bytes_freed)
                );
            }
            Ok(())
        }
    }
}

/// The tier's figures for `readthrough stat`: its copies and their bytes.
pub(crate) async fn figures(cache: &Cache, url: &str) -> Result<serde_json::Value> {
    let entries = cache.tier_entries().await?;
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    Ok(json!({"url": url, "copies": entries.len(), "bytes": bytes}))
}

async fn ls(cache: &Cache, as_json: bool) -> Result<()> {
    let mut entries = cache.tier_entries().await?;
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    if as_json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "key": e.key, "size": e.size, "created": crate::unix_seconds(e.created),
                    "expires": e.expires.map(crate::unix_seconds), "sha256": e.sha256,
                    "validator": e.validator, "generation": e.generation,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("{:>10}  {:<20}  KEY", "SIZE", "CREATED");
    for e in &entries {
        let size = bytesize::ByteSize(e.size).to_string();
        let created = humantime::format_rfc3339_seconds(e.created).to_string();
        println!("{size:>10}  {created:<20}  {}", e.key);
    }
    Ok(())
}
