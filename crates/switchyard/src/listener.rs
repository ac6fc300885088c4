//! The HTTP listener: hyper serving the router with what keeps idle clients from holding it — a
//! deadline for each request's headers (which also closes a keep-alive connection idle that
//! long), a deadline between the pieces of a request's body, a cap on connections at once and on
//! connections from one peer address; a connection past a cap is closed at once and the refusals
//! are logged (at most once a minute).

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What bounds the listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// A request's headers must arrive within this; it also closes a keep-alive connection idle
    /// for as long.
    pub header_read_timeout: Duration,
    /// Connections at once, from everyone.
    pub max_connections: usize,
    /// Connections at once from one peer address.
    pub max_per_peer: usize,
    /// The longest wait for the next piece of a request's body; past it the request fails.
    pub body_read_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 8192,
            max_per_peer: 1024,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Open connections per peer address; an entry goes when its last connection does.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection of a peer, counted until dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn take(self: &Arc<Self>, ip: IpAddr, most: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.peers.0.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Refusals, logged at most once a minute with their count.
struct Refusals {
    count: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, why: &str, peer: IpAddr) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                refused = self.count,
                %peer,
                "refusing connections: {why} (the count is since the last such line)"
            );
            self.count = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the connections finish
/// their requests for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout);
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_read_timeout,
    ));
    let graceful = GracefulShutdown::new();
    let all = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(Peers::default());
    let mut refusals = Refusals {
        count: 0,
        logged: None,
    };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: say so and let connections close.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = all.clone().try_acquire_owned() else {
            refusals.note("too many connections at once", peer.ip());
            continue;
        };
        let Some(slot) = peers.take(peer.ip(), limits.max_per_peer) else {
            refusals.note("too many connections from one address", peer.ip());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop((permit, slot));
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the grace period are closed");
    }
}

/// Raises this process's soft limit of open files to its hard limit (each connection is one),
/// and says what it is.
pub fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}
