//! Egress: every request Switchyard makes to a tenant-chosen address goes through here.
//!
//! Two clients are shared by the whole hub (one verifying TLS, one for `insecure_tls`
//! endpoints); each keeps a connection pool per host, so connections are reused. Redirects are
//! never followed. Host names are resolved by [`GuardedResolver`], which drops every address the
//! [`EgressPolicy`] forbids, so the address connected to is one that passed the check; IP
//! literals and schemes are checked by [`Clients::check_url`] before a request is made. Used by
//! the delivery engine (webhooks) and the executors (`sdk.http`, `api_call`) alike.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::CoreError;
use switchyard_core::egress::EgressPolicy;

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
                    Err(CoreError::Refused(why)) => {
                        reasons.push(why);
                        false
                    }
                    Err(other) => {
                        reasons.push(other.to_string());
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
        // `Content-Type`, `X-Benemen-Event`: receivers written against a platform's example
        // request (seed 003) sometimes compare header names as written there.
        .http1_title_case_headers()
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
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), CoreError> {
        self.policy.check_url(url)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
                .to_string()
                .contains("https")
        );
        assert!(
            c.check_url(&u("https://10.0.0.1/"))
                .unwrap_err()
                .to_string()
                .contains("private")
        );
        assert!(
            c.check_url(&u("https://[::1]/"))
                .unwrap_err()
                .to_string()
                .contains("loopback")
        );
        assert!(c.check_url(&u("ftp://example.com/")).is_err());
        assert!(c.check_url(&u("https://example.com/")).is_ok());
    }
}
