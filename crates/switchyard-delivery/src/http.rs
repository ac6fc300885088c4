//! One signed delivery attempt over the egress crate's guarded clients: the body and headers the
//! endpoint's profile asks for, the Standard Webhooks signature, a capped response read.

use std::time::{Duration, Instant};
use switchyard_core::signing::signature_header;
use switchyard_core::{Endpoint, Event};
use switchyard_egress::{Clients, error_chain};

/// How much of a response body an attempt keeps.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

/// What one HTTP attempt produced.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body: Option<String>,
    pub retry_after_s: Option<u64>,
    pub duration_ms: f64,
    pub at: i64,
    /// The headers as sent, redacted ([`redacted`]); none when no request went out.
    pub request_headers: Option<Vec<(String, String)>>,
}

/// What the trace shows of a header value: credentials and signatures are replaced by what
/// kind of value they were, everything else is kept. `token_header` is the endpoint's own
/// credential header, whatever its name.
fn redacted(name: &str, value: &str, token_header: Option<&str>) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "webhook-signature" {
        // The schemes stay readable (`v1,… v1a,…`), the signatures do not.
        return value
            .split(' ')
            .map(|s| format!("{},[redacted]", s.split(',').next().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" ");
    }
    let credential = token_header.is_some_and(|t| t.eq_ignore_ascii_case(name))
        || [
            "authorization",
            "cookie",
            "token",
            "secret",
            "key",
            "password",
            "auth",
        ]
        .iter()
        .any(|w| lower.contains(w));
    if credential {
        "[redacted]".to_string()
    } else {
        value.to_string()
    }
}

fn parse_retry_after(v: &str, now: i64) -> Option<u64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.timestamp_millis() - now) / 1000;
    Some(secs.max(0) as u64)
}

/// Makes one signed request delivering `event` to `ep`, stamped (and signed) with time `at`.
pub async fn send(clients: &Clients, ep: &Endpoint, event: &Event, at: i64) -> Response {
    let started = Instant::now();
    let done = |status, error: Option<String>, body, retry_after_s, sent| Response {
        status,
        error,
        body,
        retry_after_s,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        at,
        request_headers: sent,
    };
    let url = match reqwest::Url::parse(ep.url()) {
        Ok(u) => u,
        Err(e) => return done(None, Some(format!("invalid URL: {e}")), None, None, None),
    };
    if let Err(why) = clients.check_url(&url) {
        return done(None, Some(why.to_string()), None, None, None);
    }
    let (body, headers) = crate::profile::render(ep, event);
    let ts = at / 1000;
    let signature = signature_header(&ep.active_secrets(at), &event.id, ts, &body);
    let client = clients.client(ep.insecure_tls);
    let mut req = client
        .post(url)
        .timeout(Duration::from_millis(u64::from(ep.timeout_ms())));
    let mut all = Vec::with_capacity(headers.len() + 3);
    all.push(("webhook-id".to_string(), event.id.as_str().to_owned()));
    all.push(("webhook-timestamp".to_string(), ts.to_string()));
    if !signature.is_empty() {
        all.push(("webhook-signature".to_string(), signature));
    }
    all.extend(headers);
    let mut shown = Vec::with_capacity(all.len());
    for (k, v) in all {
        shown.push((k.clone(), redacted(&k, &v, ep.token_header())));
        req = req.header(k, v);
    }
    let sent = Some(shown);
    let mut resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = if e.is_timeout() {
                format!("timeout: no response within {} ms", ep.timeout_ms())
            } else {
                error_chain(&e)
            };
            return done(None, Some(msg), None, None, sent);
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, at));
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
                        ep.timeout_ms()
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
    done(Some(status), error, body, retry_after, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_700_000_000_000),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn credentials_and_signatures_are_redacted() {
        assert_eq!(
            redacted("webhook-signature", "v1,abc= v1a,def=", None),
            "v1,[redacted] v1a,[redacted]"
        );
        for name in ["Authorization", "X-Benemen-Token", "X-Api-Key", "Cookie"] {
            assert_eq!(redacted(name, "s3cret", None), "[redacted]", "{name}");
        }
        assert_eq!(
            redacted("X-Crm-Pass", "s3cret", Some("x-crm-pass")),
            "[redacted]"
        );
        assert_eq!(
            redacted("Content-Type", "application/json", None),
            "application/json"
        );
        assert_eq!(
            redacted("X-Benemen-Event", "UserCreated", None),
            "UserCreated"
        );
    }
}
