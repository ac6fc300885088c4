//! The outgoing HTTP side: pooled clients, the egress-guarded resolver, and one attempt.
//!
//! Two clients are shared by all endpoints (one verifying TLS, one for `insecure_tls`
//! endpoints); each keeps a connection pool per host, so connections to an endpoint are reused
//! across deliveries. Redirects are never followed. Host names are resolved by
//! [`GuardedResolver`], which drops every address the [`EgressPolicy`] forbids, so the address
//! connected to is one that passed the check.

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::egress::EgressPolicy;
use switchyard_core::signing::signature_header;
use switchyard_core::time::now_ms;
use switchyard_core::{Endpoint, Event};

/// How much of a response body an attempt keeps.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

/// Resolves host names and keeps only the addresses the egress policy allows.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

#[derive(Debug)]
struct Refused(String);
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(Refused(format!("cannot resolve {host}: {e}")))
                        as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            let mut reasons = Vec::new();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        reasons.push(r);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = reasons
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "no addresses".into());
                return Err(
                    Box::new(Refused(format!("destination refused: {host}: {why}")))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The shared HTTP clients.
#[derive(Clone)]
pub struct Clients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

/// Installs the process-wide TLS crypto provider (ring). Every `reqwest::Client` in the
/// process needs it; calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn build(resolver: GuardedResolver, insecure: bool) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(resolver))
        .danger_accept_invalid_certs(insecure)
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is static and valid")
}

impl Clients {
    pub fn new(policy: EgressPolicy) -> Clients {
        let policy = Arc::new(policy);
        let resolver = GuardedResolver {
            policy: policy.clone(),
        };
        Clients {
            verified: build(resolver.clone(), false),
            insecure: build(resolver, true),
            policy,
        }
    }

    /// The shared client: TLS-verifying, or accepting any certificate when `insecure`.
    pub fn client(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.verified
        }
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Checks what the resolver cannot see: the scheme, and hosts written as IP literals.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if !self.policy.require_https => {}
            "http" => return Err("destination refused: this instance requires https".into()),
            other => return Err(format!("destination refused: unsupported scheme `{other}`")),
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.policy.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.policy.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("destination refused: the URL has no host".into()),
        }
        .map_err(|e| {
            if e.starts_with("destination refused") {
                e
            } else {
                format!("destination refused: {e}")
            }
        })
    }
}

/// What one HTTP attempt produced.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body: Option<String>,
    pub retry_after_s: Option<u64>,
    pub duration_ms: f64,
    pub at: i64,
}

/// Renders an error with its causes, as reqwest hides the interesting part in `source()`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.timestamp_millis() - now_ms()) / 1000;
    Some(secs.max(0) as u64)
}

/// Makes one signed request delivering `event` to `ep`.
pub async fn send(clients: &Clients, ep: &Endpoint, event: &Event) -> Response {
    let at = now_ms();
    let started = Instant::now();
    let done = |status, error: Option<String>, body, retry_after_s| Response {
        status,
        error,
        body,
        retry_after_s,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        at,
    };
    let url = match reqwest::Url::parse(&ep.url) {
        Ok(u) => u,
        Err(e) => return done(None, Some(format!("invalid URL: {e}")), None, None),
    };
    if let Err(why) = clients.check_url(&url) {
        return done(None, Some(why), None, None);
    }
    let (body, headers) = crate::profile::render(ep, event);
    let ts = at / 1000;
    let signature = signature_header(&ep.active_secrets(at), &event.id, ts, &body);
    let client = if ep.insecure_tls {
        &clients.insecure
    } else {
        &clients.verified
    };
    let mut req = client
        .post(url)
        .timeout(Duration::from_millis(u64::from(ep.timeout_ms)))
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", ts.to_string());
    if !signature.is_empty() {
        req = req.header("webhook-signature", signature);
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut resp = match req.body(Bytes::from(body)).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = if e.is_timeout() {
                format!("timeout: no response within {} ms", ep.timeout_ms)
            } else {
                error_chain(&e)
            };
            return done(None, Some(msg), None, None);
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut kept: Vec<u8> = Vec::new();
    let mut read_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_LIMIT - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if kept.len() >= RESPONSE_BODY_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                if e.is_timeout() {
                    read_error = Some(format!(
                        "timeout: response body not complete within {} ms",
                        ep.timeout_ms
                    ));
                }
                break;
            }
        }
    }
    let body = if kept.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(&kept).into_owned())
    };
    let error = if (200..300).contains(&status) {
        read_error
    } else if (300..400).contains(&status) {
        Some(format!(
            "redirect not followed: {status} to {}",
            location.as_deref().unwrap_or("(no Location)")
        ))
    } else {
        Some(format!("receiver answered {status}"))
    };
    done(Some(status), error, body, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(120));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn url_checks() {
        let c = Clients::new(EgressPolicy {
            allow: vec![],
            require_https: true,
        });
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(
            c.check_url(&u("http://example.com/"))
                .unwrap_err()
                .contains("https")
        );
        assert!(
            c.check_url(&u("https://10.0.0.1/"))
                .unwrap_err()
                .contains("private")
        );
        assert!(
            c.check_url(&u("https://[::1]/"))
                .unwrap_err()
                .contains("loopback")
        );
        assert!(c.check_url(&u("ftp://example.com/")).is_err());
        assert!(c.check_url(&u("https://example.com/")).is_ok());
    }
}
