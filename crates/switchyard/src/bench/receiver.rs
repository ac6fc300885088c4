//! The bench's receiver: records when each event first arrived, how often, and whether an
//! ordered key's events came in order; and a slow receiver for another organization's backlog.

use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The receiver: records when each event first arrived.
pub(super) struct Receiver {
    /// Publish time of event i, in µs since `epoch` (0 = not yet sent).
    pub(super) sent_us: Vec<AtomicU64>,
    /// Arrivals of event i (one per endpoint when all is well).
    pub(super) seen: Vec<AtomicU64>,
    /// Per ordering key: the highest event index that arrived so far.
    pub(super) last_of_key: Vec<AtomicU64>,
    pub(super) out_of_order: AtomicUsize,
    /// Arrivals, all endpoints together.
    pub(super) received: AtomicUsize,
    pub(super) last_us: AtomicU64,
    pub(super) latencies: Mutex<Histogram<u64>>,
    pub(super) epoch: Instant,
    /// While set, every request is answered 503 with `Retry-After: 1` and not counted.
    pub(super) away: AtomicBool,
}

impl Receiver {
    pub(super) fn new(n: usize) -> Arc<Receiver> {
        Receiver::with_keys(n, 0)
    }

    pub(super) fn with_keys(n: usize, keys: usize) -> Arc<Receiver> {
        Arc::new(Receiver {
            sent_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
            last_of_key: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            out_of_order: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            last_us: AtomicU64::new(0),
            latencies: Mutex::new(Histogram::new(3).expect("3 significant figures is valid")),
            epoch: Instant::now(),
            away: AtomicBool::new(false),
        })
    }
    pub(super) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap) -> Response {
    if r.away.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "1")]).into_response();
    }
    let idx = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.strip_prefix("b-"))
        .and_then(|i| i.parse::<usize>().ok());
    let Some(i) = idx.filter(|i| *i < r.seen.len()) else {
        return StatusCode::OK.into_response();
    };
    let now = r.now_us();
    if !r.last_of_key.is_empty() {
        // Event i is in key i % keys; its predecessors in the key have smaller indexes (+1 so
        // that 0 means none yet).
        let prev = r.last_of_key[i % r.last_of_key.len()].fetch_max(i as u64 + 1, Ordering::SeqCst);
        if prev > i as u64 + 1 {
            r.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
    r.received.fetch_add(1, Ordering::SeqCst);
    r.last_us.fetch_max(now, Ordering::SeqCst);
    if r.seen[i].fetch_add(1, Ordering::SeqCst) > 0 {
        return StatusCode::OK.into_response();
    }
    let sent = r.sent_us[i].load(Ordering::SeqCst);
    if let Ok(mut h) = r.latencies.lock() {
        let _ = h.record(now.saturating_sub(sent).max(1));
    }
    StatusCode::OK.into_response()
}

/// The backlog's receiver: slow on purpose.
async fn receive_slowly() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(5)).await;
    StatusCode::OK
}

pub(super) async fn start_receiver(r: Arc<Receiver>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/slow", axum::routing::post(receive_slowly))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/hook"))
}
