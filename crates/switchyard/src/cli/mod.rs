//! The command line against a running hub, through its API: `send` publishes an event,
//! `tail` follows the hub's live stream of events (server-sent events, resumed after a break),
//! `replay` sends an endpoint's past events again, `listen` receives an organization's events
//! on this machine (`listen.rs`), `executors` keeps executors as files and tests them
//! (`executors.rs`).
//!
//! Exit codes scripts can rely on: 0 done; 1 the hub refused the request (its error is
//! printed); 2 the command line is wrong; 3 the hub could not be reached or failed.

pub mod executors;
pub mod executors_test;
pub mod listen;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_wire::deliveries::DeliveryPage;
use switchyard_wire::endpoints::{ReplayIn, ReplayOut};
use switchyard_wire::events::{EntityIn, EventIn, EventOut, PublishedOut};

/// Where the hub is and who is asking.
#[derive(Args, Debug, Clone)]
pub struct HubArgs {
    /// The hub's base URL.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8700")]
    pub url: String,
    /// An API key (`sy_…`) of the organization.
    #[arg(long, env = "SWITCHYARD_KEY", hide_env_values = true)]
    pub key: String,
    /// The organization's id.
    #[arg(long, env = "SWITCHYARD_ORG")]
    pub org: String,
    /// Print the hub's JSON answers instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

/// How a command ended, as its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The hub answered with an error (exit 1).
    Refused(String),
    /// The command line or a file it names is wrong (exit 2).
    Usage(String),
    /// The hub could not be reached, or failed (exit 3).
    Unavailable(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unavailable(_) => 3,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Usage(m) | Failure::Unavailable(m) => m,
        }
    }
}

/// The hub's API, as one organization's key sees it.
pub struct Hub {
    args: HubArgs,
    http: reqwest::Client,
}

impl Hub {
    pub fn new(args: HubArgs) -> anyhow::Result<Hub> {
        switchyard_egress::install_crypto_provider();
        // No overall timeout on the client: a live tail stays open. Each call has its own.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Hub { args, http })
    }

    fn path(&self, rest: &str) -> String {
        format!(
            "{}/v1/orgs/{}{rest}",
            self.args.url.trim_end_matches('/'),
            self.args.org
        )
    }

    /// Sends a request with the JSON `body` (one of the wire crate's `…In` types) about the
    /// organization (`rest` follows `/v1/orgs/ORG`) and returns the JSON answer of a 2xx, or
    /// the failure it was. [`read`] makes the answer its `…Out` type.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: &B,
    ) -> Result<Value, Failure> {
        self.send(method, self.path(rest), Some(body)).await
    }

    /// A `GET` about the organization.
    pub async fn get(&self, rest: &str) -> Result<Value, Failure> {
        self.send::<()>(reqwest::Method::GET, self.path(rest), None)
            .await
    }

    /// A `DELETE` about the organization.
    pub async fn delete(&self, rest: &str) -> Result<Value, Failure> {
        self.send::<()>(reqwest::Method::DELETE, self.path(rest), None)
            .await
    }

    /// [`Hub::call`] for a path from the hub's root (`/v1/orgs`).
    pub async fn call_root<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        self.send(method, url, Some(body)).await
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<&B>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, url)
            .timeout(Duration::from_secs(60))
            .bearer_auth(&self.args.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::Unavailable(format!("cannot reach the hub at {}: {e}", self.args.url))
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Unavailable(format!("the hub's answer broke off: {e}")))?;
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(v);
        }
        Err(failure_of(status, &v))
    }

    /// Opens a server-sent event stream; an error answer is the failure it was.
    async fn open_stream(&self, rest: &str) -> Result<reqwest::Response, Failure> {
        let resp = self
            .http
            .get(self.path(rest))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .bearer_auth(&self.args.key)
            .send()
            .await
            .map_err(|e| {
                Failure::Unavailable(format!("cannot reach the hub at {}: {e}", self.args.url))
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        Err(failure_of(status, &v))
    }

    pub fn json(&self) -> bool {
        self.args.json
    }
}

/// The failure an error answer is: the hub's refusal, or (a 5xx other than 502) the hub
/// failing.
/// An answer of the hub as its wire type (`PublishedOut`, `EndpointOut`…).
pub fn read<T: DeserializeOwned>(answer: &Value) -> Result<T, Failure> {
    T::deserialize(answer).map_err(|e| {
        Failure::Unavailable(format!(
            "the hub answered in a shape this CLI does not know ({e}); is it another version?"
        ))
    })
}

fn failure_of(status: reqwest::StatusCode, v: &Value) -> Failure {
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    let code = v["error"]["code"].as_str().unwrap_or("error");
    let text = format!("{} {code}: {message}", status.as_u16());
    if status.is_server_error() && status != reqwest::StatusCode::BAD_GATEWAY {
        Failure::Unavailable(text)
    } else {
        Failure::Refused(text)
    }
}

/// `switchyard send`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Example:\n  switchyard send TicketCreated --entity Ticket:7 --data '{\"ticketId\": 7}'\n  switchyard send TicketCreated --data @ticket.json --id ticket-7-created"
)]
pub struct SendArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The event type.
    pub event_type: String,
    /// What the event is about, as `TYPE:ID` (e.g. `Ticket:7`).
    #[arg(long)]
    pub entity: Option<String>,
    /// The event's data: JSON, or `@file.json` (`@-` reads standard input).
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// Your id for the event (publishing it again stores nothing new).
    #[arg(long)]
    pub id: Option<String>,
}

/// The JSON of `--data`: given inline, or read from a file (at most 16 MiB).
fn read_data(arg: &str) -> Result<Value, Failure> {
    let text = match arg.strip_prefix('@') {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), 16 << 20),
                &mut s,
            )
            .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))?;
            s
        }
        Some(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}")))?;
            if meta.len() > 16 << 20 {
                return Err(Failure::Usage(format!("{path} is larger than 16 MiB")));
            }
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("cannot read {path}: {e}")))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))
}

pub async fn send(args: SendArgs) -> Result<(), Failure> {
    let entity = match &args.entity {
        None => None,
        Some(entity) => {
            let (kind, id) = entity
                .split_once(':')
                .ok_or_else(|| Failure::Usage("--entity is `TYPE:ID`, e.g. `Ticket:7`".into()))?;
            Some(EntityIn {
                kind: Some(kind.into()),
                id: Some(id.into()),
            })
        }
    };
    let event = EventIn {
        id: args.id.clone(),
        event_type: args.event_type.clone(),
        timestamp: None,
        entity,
        data: read_data(&args.data)?,
    };
    let hub = Hub::new(args.hub).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let v = hub.call(reqwest::Method::POST, "/events", &event).await?;
    if hub.json() {
        println!("{v}");
    } else {
        let published: PublishedOut = read(&v)?;
        let again = if published.duplicate {
            " (published before: nothing new stored)"
        } else {
            ""
        };
        let n = published.deliveries;
        println!(
            "published {} ({n} {}){again}",
            published.event.id,
            if n == 1 { "delivery" } else { "deliveries" }
        );
    }
    Ok(())
}

/// `switchyard tail`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Example:\n  switchyard tail --type 'Ticket*'\n  switchyard tail --json | jq .data\n  switchyard tail --after 1042   # resume after the stream id a previous tail printed"
)]
pub struct TailArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// Only events whose type matches this name or glob (`Ticket*`).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events about this entity: `TYPE:ID` (`Ticket:7`) or just the id.
    #[arg(long)]
    pub entity: Option<String>,
    /// Start after this stream id (printed with `--json` as `stream_id`) instead of with the
    /// next event published.
    #[arg(long)]
    pub after: Option<String>,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// Largest server-sent message a tail accepts (an event is at most a few hundred KiB).
const MAX_SSE_MESSAGE: usize = 8 << 20;

/// `switchyard tail`: follows the hub's live stream; when the connection breaks, it connects
/// again and resumes after the last event it printed.
pub async fn tail(args: TailArgs) -> Result<(), Failure> {
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let mut query = Vec::new();
    if let Some(t) = &args.event_type {
        query.push(format!("type={}", url_encode(t)));
    }
    match args.entity.as_deref().map(|e| e.split_once(':')) {
        Some(Some((kind, id))) => {
            query.push(format!("entity_type={}", url_encode(kind)));
            query.push(format!("entity_id={}", url_encode(id)));
        }
        Some(None) => query.push(format!(
            "entity_id={}",
            url_encode(args.entity.as_deref().unwrap_or_default())
        )),
        None => {}
    }
    let mut after = args.after.clone();
    let mut printed = 0u64;
    let mut connected_once = false;
    loop {
        let mut q = query.clone();
        if let Some(a) = &after {
            q.push(format!("after={}", url_encode(a)));
        }
        let path = format!("/events/stream?{}", q.join("&"));
        let mut resp = match hub.open_stream(&path).await {
            Ok(r) => r,
            // The first connection must work; later, the hub may be restarting.
            Err(Failure::Unavailable(m)) if connected_once => {
                eprintln!("{m}; trying again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !connected_once {
            eprintln!("following the events of {} (Ctrl-C stops)", hub.args.org);
            connected_once = true;
        }
        let mut parser = SseParser::default();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => break,
            };
            let messages = parser.push(&chunk).map_err(Failure::Unavailable)?;
            for m in messages {
                if m.event != "event" {
                    continue;
                }
                let mut e: Value = serde_json::from_str(&m.data).map_err(|e| {
                    Failure::Unavailable(format!("the hub sent an event that is not JSON: {e}"))
                })?;
                if hub.json() {
                    e["stream_id"] = json!(m.id);
                    println!("{e}");
                } else {
                    println!("{}", event_line(&read(&e)?));
                }
                after = Some(m.id);
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
        }
        eprintln!("the stream broke off; connecting again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One event as a line for people: when it arrived, its type, entity, id and data.
fn event_line(e: &EventOut) -> String {
    let entity = match (&e.entity.kind, &e.entity.id) {
        (Some(k), Some(i)) => format!(" {k}:{i}"),
        (None, Some(i)) => format!(" {i}"),
        _ => String::new(),
    };
    format!(
        "{} {}{entity} {} {}",
        e.received_at, e.event_type, e.id, e.data
    )
}

/// One server-sent message.
#[derive(Debug, Default, PartialEq)]
struct SseMessage {
    id: String,
    event: String,
    data: String,
}

/// Reads `text/event-stream` as it arrives in chunks (the fields this hub sends: `id`,
/// `event`, `data`; comments are keep-alives).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    current: SseMessage,
}

impl SseParser {
    /// Takes the next chunk; returns the messages it completed.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseMessage>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let m = std::mem::take(&mut self.current);
                if !m.event.is_empty() || !m.data.is_empty() {
                    out.push(m);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.to_string(),
                "event" => self.current.event = value.to_string(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        if self.buf.len() + self.current.data.len() > MAX_SSE_MESSAGE {
            return Err(format!(
                "the hub sent a message larger than {} MiB",
                MAX_SSE_MESSAGE >> 20
            ));
        }
        Ok(out)
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `switchyard replay`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "Example:\n  switchyard replay --endpoint ep_0193… --since 2h")]
pub struct ReplayArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The endpoint whose events are sent again.
    #[arg(long)]
    pub endpoint: String,
    /// How far back: `90s`, `30m`, `2h`, `7d`, or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    /// Up to when (RFC 3339; default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Return at once instead of waiting until the replayed deliveries are done.
    #[arg(long)]
    pub no_wait: bool,
}

/// `2h` → the RFC 3339 time that long ago; an RFC 3339 time as it is.
fn since_time(s: &str, now_ms: i64) -> Result<String, Failure> {
    if switchyard_core::time::parse_rfc3339(s).is_some() {
        return Ok(s.to_string());
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| {
        Failure::Usage(format!("--since `{s}`: give e.g. `2h` or an RFC 3339 time"))
    })?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(Failure::Usage(format!(
                "--since `{s}`: the unit is s, m, h or d"
            )));
        }
    };
    Ok(switchyard_core::time::to_rfc3339(now_ms - n * ms))
}

pub async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let since = since_time(&args.since, switchyard_core::time::now_ms())?;
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let body = ReplayIn {
        since: since.clone(),
        until: args.until.clone(),
    };
    let ep = &args.endpoint;
    let v = hub
        .call(
            reqwest::Method::POST,
            &format!("/endpoints/{ep}/replay"),
            &body,
        )
        .await?;
    let total = read::<ReplayOut>(&v)?.deliveries;
    if hub.json() {
        println!("{v}");
    } else {
        println!("replaying {total} events since {since} to {ep}");
    }
    if args.no_wait || total == 0 {
        return Ok(());
    }
    // Progress: the endpoint's deliveries still pending, until none is.
    loop {
        let page: DeliveryPage = read(
            &hub.get(&format!(
                "/deliveries?endpoint_id={ep}&status=pending&limit=500"
            ))
            .await?,
        )?;
        let pending = page.data.len() as u64;
        let done = total.saturating_sub(pending);
        if !hub.json() {
            let width = 30;
            let filled = (done * width / total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {done}/{total}{}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                if pending >= 500 {
                    " (500+ pending)"
                } else {
                    ""
                }
            );
        }
        if pending == 0 {
            if !hub.json() {
                eprintln!();
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_for_since() {
        let now = 1_800_000_000_000;
        assert_eq!(
            since_time("2h", now).expect("2h"),
            switchyard_core::time::to_rfc3339(now - 7_200_000)
        );
        assert_eq!(
            since_time("2026-11-23T10:00:00Z", now).expect("time"),
            "2026-11-23T10:00:00Z"
        );
        assert!(since_time("2w", now).is_err());
        assert!(since_time("h", now).is_err());
    }

    #[test]
    fn data_inline_or_from_a_file() {
        assert_eq!(read_data(r#"{"a":1}"#).expect("inline"), json!({"a": 1}));
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("d.json");
        std::fs::write(&f, r#"{"b":[1,2]}"#).expect("write");
        assert_eq!(
            read_data(&format!("@{}", f.display())).expect("file"),
            json!({"b": [1, 2]})
        );
        assert!(matches!(read_data("nope"), Err(Failure::Usage(_))));
        assert!(matches!(
            read_data("@/no/such/file"),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            url_encode("2026-11-23T10:00:00.000+01:00"),
            "2026-11-23T10%3A00%3A00.000%2B01%3A00"
        );
    }

    #[test]
    fn sse_messages_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: ev").expect("ok").is_empty());
        let got = p
            .push(b"ent\r\nid: 7\ndata: {\"a\":\ndata: 1}\n\n")
            .expect("ok");
        assert_eq!(
            got,
            vec![SseMessage {
                id: "7".into(),
                event: "event".into(),
                data: "{\"a\":\n1}".into()
            }]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut refused = false;
        for _ in 0..10 {
            if p.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }
}
