//! The listener: accepts connections up to a limit, serves HTTP/1.1 and HTTP/2 on
//! each, and on shutdown stops accepting and lets the responses in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::server::handler::{Shared, handle};

/// How long to wait before accepting again after `accept` failed (out of file
/// descriptors, say), so a persistent failure does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Limits on each client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connections: usize,
    pub(crate) header_bytes: usize,
}

/// Serves `listener` until `shutdown` resolves, then waits for the open
/// connections' responses in flight to finish.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(limits.header_bytes);
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.header_bytes).unwrap_or(u32::MAX));
    let slots = Arc::new(Semaphore::new(limits.connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let Some((stream, slot)) = accepted else {
            tokio::time::sleep(ACCEPT_PAUSE).await;
            continue;
        };
        let (builder, shared, watcher) = (builder.clone(), Arc::clone(&shared), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            let _open = shared.metrics.connection();
            let service = service_fn(move |request| handle(Arc::clone(&shared), request));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "a client connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for the responses in flight");
    graceful.shutdown().await;
}

/// The next connection, once a slot is free; `None` when `accept` failed.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let slot = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, slot))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot accept a connection");
            None
        }
    }
}
