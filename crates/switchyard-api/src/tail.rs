//! Live tail: an organization's events as server-sent events, as they are committed.
//!
//! The stream reads the store, not a feed of this node's publishes: it asks for the events after
//! the last one it read (by sequence), so what another node committed arrives too and nothing
//! is skipped when a reader falls behind. A publish on this node wakes it at once; otherwise it
//! looks again every [`POLL`]. The key is checked again every [`RECHECK`], so a revoked key's
//! stream ends.
//!
//! A stream costs what it scans once: each read covers at most [`WINDOW`] sequence numbers up to
//! the newest event (a bounded range of the `(org, seq)` index, whatever the filters), and the
//! stream moves past every row it scanned, matched or not. At most [`PER_KEY`] streams per key
//! and the organization's limit `streams` per organization are open at once; more answer 429.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::events::type_pattern;
use crate::extract::{Auth, Query};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::ids::OrgId;
use switchyard_core::{Event, Principal, Role};
use switchyard_hub::EventQuery;
use switchyard_wire::events::{EventOut, StreamParams};
use tokio::sync::broadcast;

/// How long the stream waits for a wake-up from this node before asking the store anyway (for
/// events committed by other nodes).
const POLL: Duration = Duration::from_secs(1);

/// How often the stream checks that its key still exists.
const RECHECK: Duration = Duration::from_secs(10);

/// Events read from the store at a time.
const PAGE: u32 = 200;

/// The most sequence numbers one read scans.
const WINDOW: i64 = 10_000;

/// Live streams open at once per key (per organization: its limit `streams`).
const PER_KEY: usize = 4;

/// Live streams open, per key and per organization.
#[derive(Default)]
pub struct Open(std::sync::Mutex<(HashMap<String, usize>, HashMap<String, usize>)>);

/// One open stream, counted until dropped.
struct Counted {
    open: Arc<Open>,
    key: String,
    org: String,
}

impl Open {
    fn take(self: &Arc<Self>, key: &str, org: &str, per_org: usize) -> Result<Counted, ApiError> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| ApiError::internal("the stream counts are poisoned"))?;
        let (by_key, by_org) = &mut *m;
        let (k, o) = (
            by_key.get(key).copied().unwrap_or(0),
            by_org.get(org).copied().unwrap_or(0),
        );
        if k >= PER_KEY || o >= per_org {
            let which = if k >= PER_KEY {
                format!("{PER_KEY} for one key")
            } else {
                format!("{per_org} for this organization, its limit `streams`")
            };
            return Err(ApiError::too_many(
                "too_many_streams",
                format!(
                    "too many live streams open at once (at most {which}); close one and retry"
                ),
                RECHECK.as_secs(),
            ));
        }
        *by_key.entry(key.to_string()).or_insert(0) += 1;
        *by_org.entry(org.to_string()).or_insert(0) += 1;
        Ok(Counted {
            open: self.clone(),
            key: key.to_string(),
            org: org.to_string(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.open.0.lock() {
            let (by_key, by_org) = &mut *m;
            for (map, name) in [(by_key, &self.key), (by_org, &self.org)] {
                if let Some(n) = map.get_mut(name.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(name.as_str());
                    }
                }
            }
        }
    }
}

/// Follow an organization's events as they are committed (`text/event-stream`).
///
/// Each message is `event: event`, `id: <stream id>` and the event as `data:`. Reconnecting
/// with `Last-Event-ID` (or `after`) resumes after that message, without gaps.
#[utoipa::path(get, tag = "events", path = "/v1/orgs/{org}/events/stream",
    params(("type" = Option<String>, Query), ("entity_type" = Option<String>, Query),
           ("entity_id" = Option<String>, Query), ("after" = Option<String>, Query)),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    Query(q): Query<StreamParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let per_org = usize::try_from(s.hub.limits(&org).streams).unwrap_or(usize::MAX);
    let counted = s.streams.take(&p.key_id, &org, per_org)?;
    let resume = q
        .after
        .as_deref()
        .or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    let after = match resume {
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("`after` is not a stream id this API gave out"))?,
        None => newest_seq(&s, &org).await?,
    };
    let query = EventQuery {
        event_type: type_pattern(q.event_type)?,
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        limit: PAGE,
        ..Default::default()
    };
    let tail = Tail {
        wake: s.hub.published_orgs(),
        org: org.clone(),
        s,
        principal: p,
        query,
        after,
        ready: VecDeque::new(),
        checked: Instant::now(),
        _counted: counted,
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        let next = t.next().await?;
        Some((Ok(next), t))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The sequence number of the organization's newest event (0 when it has none).
async fn newest_seq(s: &AppState, org: &OrgId) -> ApiResult<i64> {
    let newest = s
        .reads
        .list_events(
            org,
            &EventQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    Ok(newest.first().map_or(0, |e| e.seq))
}

/// One reader's place in the log.
struct Tail {
    s: AppState,
    principal: Principal,
    org: OrgId,
    wake: broadcast::Receiver<Arc<str>>,
    query: EventQuery,
    /// The last sequence number read (sent or filtered out).
    after: i64,
    ready: VecDeque<Event>,
    checked: Instant,
    /// This stream in the per-key and per-organization counts.
    _counted: Counted,
}

impl Tail {
    /// The next message, waiting for one; `None` ends the stream (key revoked, hub stopping).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(message(&e));
            }
            if self.checked.elapsed() >= RECHECK {
                if !self.key_still_valid().await {
                    return None;
                }
                self.checked = Instant::now();
            }
            // The newest event bounds the scan, and one read covers at most WINDOW of the log.
            let newest = match newest_seq(&self.s, &self.org).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = ?e, org = %self.org, "a live tail could not read events");
                    self.after
                }
            };
            if newest > self.after {
                let upper = newest.min(self.after.saturating_add(WINDOW));
                let q = EventQuery {
                    after_seq: Some(self.after),
                    before_seq: Some(upper + 1),
                    ..self.query.clone()
                };
                match self.s.reads.list_events(&self.org, &q).await {
                    Ok(events) => {
                        // A full page may leave matches in the window; otherwise everything up
                        // to `upper` was scanned, matched or not.
                        self.after = if events.len() as u32 >= PAGE {
                            events.last().map_or(upper, |e| e.seq)
                        } else {
                            upper
                        };
                        self.ready.extend(events);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, org = %self.org, "a live tail could not read events")
                    }
                }
            }
            if !self.wait().await {
                return None;
            }
        }
    }

    /// Waits for a publish of this organization on this node, or [`POLL`]. False when the hub
    /// is gone.
    async fn wait(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + POLL;
        loop {
            match tokio::time::timeout_at(deadline, self.wake.recv()).await {
                Err(_) => return true,
                Ok(Ok(org)) if *org == *self.org => return true,
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
                Ok(Err(broadcast::error::RecvError::Closed)) => return false,
            }
        }
    }

    /// True while the stream's key exists (the operator's key always does).
    async fn key_still_valid(&self) -> bool {
        let Some(org) = &self.principal.org else {
            return true;
        };
        match self.s.reads.list_api_keys(org).await {
            Ok(keys) => keys.iter().any(|k| k.id == self.principal.key_id),
            // A store that cannot answer ends no stream; the next check asks again.
            Err(_) => true,
        }
    }
}

fn message(e: &Event) -> SseEvent {
    let data = serde_json::to_string(&EventOut::from(e)).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .event("event")
        .id(e.seq.to_string())
        .data(data)
}
