//! The command line against a running hub, through its API: `send` publishes an event,
//! `tail` prints events as they arrive (polling the newest 500; a faster stream than that per
//! interval can skip some), `replay` sends an endpoint's past events again, `executors`
//! keeps executors as files (`executors.rs`).
//!
//! Exit codes scripts can rely on: 0 done; 1 the hub refused the request (its error is
//! printed); 2 the command line is wrong; 3 the hub could not be reached or failed.

pub mod executors;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use switchyard_core::glob::matches as glob_matches;

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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
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

    /// Sends a request and returns the JSON answer of a 2xx, or the failure it was.
    pub async fn call(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, self.path(rest))
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
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let text = format!("{} {code}: {message}", status.as_u16());
        if status.is_server_error() && status != reqwest::StatusCode::BAD_GATEWAY {
            Err(Failure::Unavailable(text))
        } else {
            Err(Failure::Refused(text))
        }
    }

    pub fn json(&self) -> bool {
        self.args.json
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
    let mut event = json!({"type": args.event_type, "data": read_data(&args.data)?});
    if let Some(id) = &args.id {
        event["id"] = json!(id);
    }
    if let Some(entity) = &args.entity {
        let (kind, id) = entity
            .split_once(':')
            .ok_or_else(|| Failure::Usage("--entity is `TYPE:ID`, e.g. `Ticket:7`".into()))?;
        event["entity"] = json!({"type": kind, "id": id});
    }
    let hub = Hub::new(args.hub).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let v = hub
        .call(reqwest::Method::POST, "/events", Some(&event))
        .await?;
    if hub.json() {
        println!("{v}");
    } else {
        let again = if v["duplicate"] == true {
            " (published before: nothing new stored)"
        } else {
            ""
        };
        println!(
            "published {} ({} deliveries){again}",
            v["id"].as_str().unwrap_or("?"),
            v["deliveries"]
        );
    }
    Ok(())
}

/// `switchyard tail`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Example:\n  switchyard tail --type 'Ticket*'\n  switchyard tail --json | jq .data"
)]
pub struct TailArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// Only events whose type matches this name or glob (`Ticket*`).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events about this entity id.
    #[arg(long)]
    pub entity: Option<String>,
    /// Also print the events of the last this many seconds before following.
    #[arg(long, default_value_t = 0)]
    pub backlog_s: u64,
    /// How often to ask the hub for new events, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// Ids already printed, the oldest forgotten first (the hub's newest page is what is polled).
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > 10_000
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

pub async fn tail(args: TailArgs) -> Result<(), Failure> {
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    // What arrived before this moment (less the backlog) is not printed.
    let from = switchyard_core::time::now_ms() - (args.backlog_s as i64) * 1000;
    let mut seen = Seen {
        ids: HashSet::new(),
        order: VecDeque::new(),
    };
    let mut printed = 0u64;
    let mut query = "/events?limit=500".to_string();
    if let Some(e) = &args.entity {
        query.push_str(&format!("&entity_id={}", url_encode(e)));
    }
    loop {
        // The newest events, by arrival (whatever time they say they happened at).
        let page = hub.call(reqwest::Method::GET, &query, None).await?;
        let events = page["data"].as_array().cloned().unwrap_or_default();
        for e in events.iter().rev() {
            let id = e["id"].as_str().unwrap_or_default();
            if !seen.insert(id) {
                continue;
            }
            let received = e["received_at"]
                .as_str()
                .and_then(switchyard_core::time::parse_rfc3339)
                .unwrap_or(i64::MAX);
            let ty = e["type"].as_str().unwrap_or_default();
            if received < from
                || args
                    .event_type
                    .as_deref()
                    .is_some_and(|g| !glob_matches(g, ty))
            {
                continue;
            }
            if hub.json() {
                println!("{e}");
            } else {
                let entity = match (e["entity"]["type"].as_str(), e["entity"]["id"].as_str()) {
                    (Some(k), Some(i)) => format!(" {k}:{i}"),
                    (None, Some(i)) => format!(" {i}"),
                    _ => String::new(),
                };
                println!(
                    "{} {ty}{entity} {id} {}",
                    e["received_at"].as_str().unwrap_or_default(),
                    e["data"]
                );
            }
            printed += 1;
            if args.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms.max(50))).await;
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
    let mut body = json!({"since": since});
    if let Some(u) = &args.until {
        body["until"] = json!(u);
    }
    let ep = &args.endpoint;
    let v = hub
        .call(
            reqwest::Method::POST,
            &format!("/endpoints/{ep}/replay"),
            Some(&body),
        )
        .await?;
    let total = v["deliveries"].as_u64().unwrap_or(0);
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
        let page = hub
            .call(
                reqwest::Method::GET,
                &format!("/deliveries?endpoint_id={ep}&status=pending&limit=500"),
                None,
            )
            .await?;
        let pending = page["data"].as_array().map_or(0, Vec::len) as u64;
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
}
