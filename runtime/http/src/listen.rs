//! Serving the API on a TCP listener within bounds a client cannot stretch.
//!
//! - At most [`HttpLimits::max_connections`] connections at once: past it the server
//!   stops accepting, and new connections wait in the kernel's backlog, so that idle
//!   sockets can never take the descriptors the WAL, the stores and the plugins need.
//! - A request's headers must arrive within [`HttpLimits::header_timeout`], which also
//!   closes a connection idle that long between requests.
//!
//! A request's body is read by the router, once the request is authenticated
//! ([`crate::body::read_within`]).
//! - On shutdown no new connection is taken and each open one closes after the request
//!   under way (an idle one at once); [`serve`] returns when all have closed.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// For a request's headers, and for a connection idle between requests.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes and every
/// connection has closed.
///
/// # Errors
///
/// None in practice: a failed `accept` (the process out of descriptors) is logged and
/// retried after a pause.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let capacity = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(capacity));
    let (stopping, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(
                hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
            );
            let stopped = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every slot back: every connection closed.
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}
