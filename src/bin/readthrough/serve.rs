//! `readthrough serve`: a caching HTTP reverse proxy over the cache directory.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use readthrough::{Cache, Route, Server};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The address to listen on (port 0: any free port, printed at start)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve every path from this upstream (http, https or s3 URL): GET /p?q reads URL/p?q
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Serve paths under PREFIX from URL, e.g. /pypi/=https://pypi.org (repeatable)
    #[arg(long = "route", value_name = "PREFIX=URL", value_parser = Route::parse)]
    routes: Vec<Route>,
    /// Cache answers to requests with credentials on the route of PREFIX, each copy
    /// served only to the same credentials (repeatable; "/" names --upstream)
    #[arg(long, value_name = "PREFIX")]
    cache_credentials: Vec<String>,
    /// Fail an upstream fetch that sends nothing for this long (504 to clients)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// The most client connections open at once
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// The most bytes of request headers (at least 8KiB)
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = crate::parse_size)]
    max_header_size: u64,
}

pub(crate) async fn run(cache: Cache, args: &Args, quiet: bool) -> Result<()> {
    let server = server(cache, args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    if !quiet {
        eprintln!("readthrough: serving on http://{addr}");
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if !quiet {
            eprintln!("readthrough: stopping: finishing the responses in flight");
        }
    };
    server.run(listener, shutdown).await?;
    Ok(())
}

/// The server the arguments describe.
fn server(cache: Cache, args: &Args) -> Result<Server> {
    let mut routes = args.routes.clone();
    if let Some(upstream) = &args.upstream {
        routes.push(Route::new("/", upstream)?);
    }
    if routes.is_empty() {
        bail!("serve needs --upstream URL or at least one --route PREFIX=URL");
    }
    for prefix in &args.cache_credentials {
        let wanted = prefix.trim_end_matches('/');
        let named = |r: &&mut Route| r.prefix().trim_end_matches('/') == wanted;
        let Some(route) = routes.iter_mut().find(named) else {
            bail!("--cache-credentials {prefix}: no route has this prefix");
        };
        *route = route.clone().cache_credentials();
    }
    let header_bytes = usize::try_from(args.max_header_size).unwrap_or(usize::MAX);
    if header_bytes < 8 * 1024 {
        bail!("--max-header-size must be at least 8KiB");
    }
    let mut server = Server::new(cache, routes)?
        .idle_timeout(args.idle_timeout)
        .max_connections(args.max_connections as usize)
        .max_header_bytes(header_bytes);
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        server = server.s3_endpoint(endpoint);
    }
    Ok(server)
}
