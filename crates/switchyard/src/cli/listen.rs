//! `switchyard listen`: a receiver on this machine for an organization's events while
//! developing. It registers a temporary endpoint and subscription on the hub, prints each
//! delivery (its signature checked with the endpoint's secret), forwards it to a local URL if
//! asked, and removes the endpoint (with its subscription) when it stops.
//!
//! With `--forward`, the receiver answers the hub with what the forward target answered, so the
//! hub's retries and the trace show how the local application behaved.

use super::{Failure, Hub, HubArgs, read};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_wire::endpoints::{EndpointIn, EndpointOut};
use switchyard_wire::subscriptions::SubscriptionIn;
use tokio::sync::Notify;

/// Largest delivery the receiver reads (the hub's events are far smaller by default).
const MAX_BODY_BYTES: usize = 16 << 20;
/// Most bytes of the forward target's answer passed back to the hub.
const MAX_FORWARD_ANSWER: usize = 64 << 10;
/// How long a forward may take (the hub's own timeout per attempt is at most 30 s).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// `switchyard listen`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "Example:\n  \
    switchyard listen --forward http://localhost:3000/webhooks\n  \
    switchyard listen --type 'Ticket*' --json | jq .event.data\n\n\
    The hub must be allowed to deliver to this machine: start it with\n  \
    --allow-destination 127.0.0.0/8 (development), or give --public-url.")]
pub struct ListenArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// Event types (names or globs) to receive; repeat it. Default: every event.
    #[arg(long = "type")]
    pub event_types: Vec<String>,
    /// Also send each delivery, headers and body as received, to this URL, and answer the hub
    /// with what it answered.
    #[arg(long)]
    pub forward: Option<String>,
    /// Where the local receiver listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// The URL the hub delivers to, when it reaches this receiver by another address (a
    /// tunnel, another machine). Default: `http://` and the bound address.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Stop after this many deliveries (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// What the receiver needs for each delivery.
struct Listener {
    secret: String,
    forward: Option<String>,
    http: reqwest::Client,
    json: bool,
    /// Deliveries handled so far, and after how many to stop.
    handled: AtomicU64,
    count: Option<u64>,
    done: Notify,
}

pub async fn listen(args: ListenArgs) -> Result<(), Failure> {
    // Taken over before anything is registered, so that an interrupt at any point after it
    // still removes the endpoint.
    let signals = Signals::install()?;
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    if let Some(f) = &args.forward {
        reqwest::Url::parse(f)
            .map_err(|e| Failure::Usage(format!("--forward `{f}` is not a URL: {e}")))?;
    }
    let socket = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", args.bind)))?;
    let bound = socket
        .local_addr()
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", args.bind)))?;
    let url = args.public_url.clone().unwrap_or_else(|| {
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        let host = if bound.is_ipv6() && host != "127.0.0.1" {
            format!("[{host}]")
        } else {
            host
        };
        format!("http://{host}:{}/", bound.port())
    });
    let types = if args.event_types.is_empty() {
        vec!["*".to_string()]
    } else {
        args.event_types.clone()
    };

    let description = format!(
        "switchyard listen (temporary) on {} pid {}",
        hostname(),
        std::process::id()
    );
    let new_endpoint = EndpointIn {
        url: Some(url.clone()),
        description: Some(description),
        ..Default::default()
    };
    let ep = hub
        .call(reqwest::Method::POST, "/endpoints", &new_endpoint)
        .await
        .map_err(|e| match e {
            Failure::Refused(m) if m.starts_with("422") => Failure::Refused(format!(
                "{m}\nThe hub delivers to this machine only when started with \
                 --allow-destination 127.0.0.0/8 (development); or give --public-url."
            )),
            other => other,
        })?;
    let ep: EndpointOut = read(&ep)?;
    let endpoint = ep.id;
    let secret = ep.secret.unwrap_or_default();
    // From here on, the endpoint is removed however listening ends.
    let outcome = serve(
        &hub,
        &args,
        socket,
        (&endpoint, &secret),
        &types,
        signals,
        &url,
    )
    .await;
    let removed = hub.delete(&format!("/endpoints/{endpoint}")).await;
    match removed {
        Ok(_) => eprintln!("removed the endpoint {endpoint} and its subscription"),
        Err(e) => eprintln!(
            "could not remove the endpoint {endpoint} ({}); remove it with \
             DELETE /v1/orgs/{}/endpoints/{endpoint}",
            e.message(),
            hub.args.org
        ),
    }
    outcome
}

/// Subscribes the endpoint and receives until interrupted or `--count` deliveries.
async fn serve(
    hub: &Hub,
    args: &ListenArgs,
    socket: tokio::net::TcpListener,
    (endpoint, secret): (&str, &str),
    types: &[String],
    mut signals: Signals,
    url: &str,
) -> Result<(), Failure> {
    let subscription = SubscriptionIn {
        event_types: types.to_vec(),
        endpoint_id: Some(endpoint.to_string()),
        ..Default::default()
    };
    hub.call(reqwest::Method::POST, "/subscriptions", &subscription)
        .await?;
    let http = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::Unavailable(format!("cannot build an HTTP client: {e}")))?;
    let state = Arc::new(Listener {
        secret: secret.to_string(),
        forward: args.forward.clone(),
        http,
        json: hub.json(),
        handled: AtomicU64::new(0),
        count: args.count,
        done: Notify::new(),
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state.clone());
    eprintln!(
        "Ready: {} of {} to {url} (endpoint {endpoint}){}. Signing secret: {secret}. Ctrl-C stops.",
        types.join(", "),
        hub.args.org,
        args.forward
            .as_deref()
            .map(|f| format!(", forwarded to {f}"))
            .unwrap_or_default()
    );
    let stop = async move {
        tokio::select! {
            _ = signals.interrupt.recv() => {},
            _ = signals.terminate.recv() => {},
            _ = state.done.notified() => {},
        }
    };
    axum::serve(socket, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Failure::Unavailable(format!("the receiver failed: {e}")))
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| Failure::Unavailable(format!("cannot catch signals: {e}"));
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
        })
    }
}

/// One delivery: checked, printed, forwarded; the answer is the forward target's.
async fn receive(
    State(l): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let id = header("webhook-id");
    let verified = switchyard_core::signing::verify(
        &l.secret,
        &id,
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
        switchyard_core::time::now_ms() / 1000,
    )
    .map_err(|e| e.to_string());
    let (status, answer, forwarded) = match (&verified, &l.forward) {
        (Err(why), _) => (
            StatusCode::UNAUTHORIZED,
            Bytes::from(format!("signature not verified: {why}")),
            None,
        ),
        (Ok(()), None) => (StatusCode::OK, Bytes::new(), None),
        (Ok(()), Some(target)) => {
            let started = Instant::now();
            let (status, answer) = forward(&l.http, target, &headers, body.clone()).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            (status, answer, Some((status, ms)))
        }
    };
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if l.json {
        let mut line = json!({
            "webhook_id": id,
            "verified": verified.is_ok(),
            "event": event,
            "status": status.as_u16(),
        });
        if let Err(why) = &verified {
            line["why"] = json!(why);
        }
        if let Some((s, ms)) = forwarded {
            line["forward"] = json!({"status": s.as_u16(), "ms": ms});
        }
        println!("{line}");
    } else {
        let check = match &verified {
            Ok(()) => "verified".to_string(),
            Err(why) => format!("NOT VERIFIED ({why})"),
        };
        let fwd = forwarded
            .map(|(s, ms)| format!(" → {} ({ms:.0} ms)", s.as_u16()))
            .unwrap_or_default();
        println!(
            "{} {} {} {check}{fwd}",
            switchyard_core::time::to_rfc3339(switchyard_core::time::now_ms()),
            event["type"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or(&id),
        );
    }
    let n = l.handled.fetch_add(1, Ordering::SeqCst) + 1;
    if l.count.is_some_and(|c| n >= c) {
        // The answer still goes out: the server stops after the requests in flight.
        l.done.notify_one();
    }
    (status, answer)
}

/// Sends the delivery on, with the headers it came with; the target's status and the start of
/// its answer (502 when it could not be reached).
async fn forward(
    http: &reqwest::Client,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let mut req = http.post(target).body(body);
    for (name, value) in headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding" | "keep-alive"
        ) {
            req = req.header(name, value);
        }
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                Bytes::from(format!("cannot reach {target}: {e}")),
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut answer = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_FORWARD_ANSWER - answer.len();
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if answer.len() >= MAX_FORWARD_ANSWER {
            break;
        }
    }
    (status, Bytes::from(answer))
}

/// This machine's name, for the temporary endpoint's description.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}
