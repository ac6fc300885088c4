//! The rules of endpoints: a new endpoint's defaults, which settings a create or a patch may
//! carry and what each must be, and secret rotation. The API, the CLI and config files all
//! change endpoints through here.

use crate::egress::EgressPolicy;
use crate::error::CoreError;
use crate::ordering::{HeadFailure, Ordering, OrderingKey};
use crate::signing::{Scheme, SigningSecret};
use std::collections::BTreeMap;

/// How a webhook request is shaped for its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The Switchyard envelope with Standard Webhooks headers.
    Standard,
    /// Enreach (Benemen) receivers: flat envelope, `X-Benemen-Event`, `X-Benemen-Token`.
    Enreach,
    /// Enate receivers: the message fields at top level.
    Enate,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Enreach => "enreach",
            Profile::Enate => "enate",
        }
    }
    /// Whether a receiver of this profile accepted a request it answered with `status`: any
    /// 2xx, except that Enreach re-sends on anything but 200 OK (seed 003).
    pub fn accepts(self, status: u16) -> bool {
        match self {
            Profile::Enreach => status == 200,
            Profile::Standard | Profile::Enate => (200..300).contains(&status),
        }
    }
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "standard" => Some(Profile::Standard),
            "enreach" => Some(Profile::Enreach),
            "enate" => Some(Profile::Enate),
            _ => None,
        }
    }
}

/// A signing secret with, for a rotated-out one, the time it stops signing (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedSecret {
    pub secret: SigningSecret,
    pub expires_at: Option<i64>,
}

/// A delivery destination and how to call it. Made by [`Endpoint::new`] and changed by
/// [`Endpoint::apply`] (and [`Endpoint::rotate_secret`]), which hold its rules; what a rule
/// guards is private and read through methods. The store rebuilds one it saved with
/// [`Endpoint::stored`].
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: crate::ids::EndpointId,
    pub org_id: crate::ids::OrgId,
    url: String,
    description: String,
    profile: Profile,
    headers: BTreeMap<String, String>,
    /// Static token sent in `token_header` (Enreach's Secret → X-Benemen-Token).
    token: Option<String>,
    token_header: Option<String>,
    pub insecure_tls: bool,
    timeout_ms: u32,
    /// `None`: the default schedule.
    retry_schedule_s: Option<Vec<u32>>,
    max_in_flight: u32,
    /// Requests per second at most (`None`: unlimited).
    max_rps: Option<u32>,
    /// `Some`: deliveries with the same ordering key arrive in publish order, one at a time.
    ordering: Option<crate::ordering::Ordering>,
    /// Newest first; the first one is current, later ones are rotated out and expire.
    secrets: Vec<KeyedSecret>,
    enabled: bool,
    disabled_reason: Option<String>,
    /// Set when the endpoint was created for a subscription's inline `url`.
    pub owner_subscription: Option<crate::ids::SubscriptionId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An endpoint as the store saved it (its rules were checked when it was made or changed).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEndpoint {
    pub id: crate::ids::EndpointId,
    pub org_id: crate::ids::OrgId,
    pub url: String,
    pub description: String,
    pub profile: Profile,
    pub headers: BTreeMap<String, String>,
    pub token: Option<String>,
    pub token_header: Option<String>,
    pub insecure_tls: bool,
    pub timeout_ms: u32,
    pub retry_schedule_s: Option<Vec<u32>>,
    pub max_in_flight: u32,
    pub max_rps: Option<u32>,
    pub ordering: Option<crate::ordering::Ordering>,
    pub secrets: Vec<KeyedSecret>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub owner_subscription: Option<crate::ids::SubscriptionId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    /// An endpoint as the store saved it.
    pub fn stored(e: StoredEndpoint) -> Endpoint {
        Endpoint {
            id: e.id,
            org_id: e.org_id,
            url: e.url,
            description: e.description,
            profile: e.profile,
            headers: e.headers,
            token: e.token,
            token_header: e.token_header,
            insecure_tls: e.insecure_tls,
            timeout_ms: e.timeout_ms,
            retry_schedule_s: e.retry_schedule_s,
            max_in_flight: e.max_in_flight,
            max_rps: e.max_rps,
            ordering: e.ordering,
            secrets: e.secrets,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            owner_subscription: e.owner_subscription,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// How requests to it are shaped (`standard`, `enreach`, `enate`).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Headers sent with every request.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// Static token sent in [`Endpoint::token_header`].
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn token_header(&self) -> Option<&str> {
        self.token_header.as_deref()
    }

    /// Longest a request may take (ms).
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }

    /// Its own retry schedule (s); `None`: the default ([`Endpoint::schedule`] gives either).
    pub fn retry_schedule_s(&self) -> Option<&[u32]> {
        self.retry_schedule_s.as_deref()
    }

    /// Requests in flight at most.
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// Requests per second at most (`None`: unlimited).
    pub fn max_rps(&self) -> Option<u32> {
        self.max_rps
    }

    /// `Some`: deliveries with the same ordering key arrive in publish order, one at a time.
    pub fn ordering(&self) -> Option<&crate::ordering::Ordering> {
        self.ordering.as_ref()
    }

    /// Its signing keys, newest first: the first is current, later ones rotated out.
    pub fn secrets(&self) -> &[KeyedSecret] {
        &self.secrets
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Why it is disabled (`None` while enabled).
    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled_reason.as_deref()
    }
}

impl Endpoint {
    /// Secrets that sign at `now`: the current one and rotated ones not yet expired.
    pub fn active_secrets(&self, now: i64) -> Vec<SigningSecret> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| s.secret.clone())
            .collect()
    }

    /// How this endpoint's requests are signed: the scheme of its current key.
    pub fn scheme(&self) -> crate::signing::Scheme {
        self.secrets
            .first()
            .map_or(crate::signing::Scheme::Hmac, |s| s.secret.scheme())
    }

    /// The `whpk_` public keys that verify this endpoint's requests at `now`, current first
    /// (none for HMAC keys).
    pub fn public_keys(&self, now: i64) -> Vec<String> {
        self.active_secrets(now)
            .iter()
            .filter_map(SigningSecret::public_key)
            .collect()
    }

    pub fn schedule(&self) -> &[u32] {
        self.retry_schedule_s
            .as_deref()
            .unwrap_or(&crate::retry::DEFAULT_SCHEDULE_S)
    }
}

/// Longest a request to an endpoint may take.
pub const MAX_TIMEOUT_MS: u32 = 30_000;
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
/// Most concurrent requests an endpoint may ask for.
pub const MAX_IN_FLIGHT: u32 = 1000;
/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

/// Settings a create or a patch carries. `None` keeps the current value; for the fields that
/// can be cleared, `Some(None)` clears.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub profile: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub token: Option<Option<String>>,
    pub token_header: Option<Option<String>>,
    pub insecure_tls: Option<bool>,
    pub timeout_ms: Option<u32>,
    pub retry_schedule_s: Option<Option<Vec<u32>>>,
    pub ordered: Option<bool>,
    /// `entity` or a data path such as `data.ticketId` (ordered endpoints only).
    pub ordering_key: Option<String>,
    /// `skip` or `block` (ordered endpoints only).
    pub on_head_failure: Option<String>,
    pub max_rps: Option<Option<u32>>,
    pub max_in_flight: Option<u32>,
    pub signing: Option<String>,
    /// The caller's own `whsec_…` secret (create only).
    pub secret: Option<String>,
    pub enabled: Option<bool>,
}

/// Whether the changes make a new endpoint or patch an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Patch,
}

impl Endpoint {
    /// A fresh endpoint of `org` with the defaults and a generated secret, before changes.
    pub fn new(org: &crate::ids::OrgId, now: i64) -> Endpoint {
        Endpoint {
            id: crate::ids::EndpointId::generate(),
            org_id: org.clone(),
            url: String::new(),
            description: String::new(),
            profile: Profile::Standard,
            headers: BTreeMap::new(),
            token: None,
            token_header: None,
            insecure_tls: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry_schedule_s: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_rps: None,
            ordering: None,
            secrets: vec![KeyedSecret {
                secret: SigningSecret::generate(),
                expires_at: None,
            }],
            enabled: true,
            disabled_reason: None,
            owner_subscription: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies `c`, checking every setting it carries (the URL against `policy`). On error the
    /// endpoint may be partly changed: apply to a copy and keep it only on success.
    pub fn apply(
        &mut self,
        c: EndpointChanges,
        change: Change,
        policy: &EgressPolicy,
    ) -> Result<(), CoreError> {
        let invalid = |m: &str| Err(CoreError::invalid(m));
        if change == Change::Create && c.url.is_none() && self.url.is_empty() {
            return invalid("`url` is required");
        }
        if let Some(url) = c.url {
            check_destination(&url, policy)?;
            self.url = url;
        }
        if let Some(d) = c.description {
            if d.len() > 1000 {
                return invalid("`description` is at most 1000 characters");
            }
            self.description = d;
        }
        if let Some(p) = c.profile {
            self.profile = Profile::parse(&p).ok_or_else(|| {
                CoreError::invalid("`profile` must be `standard`, `enreach` or `enate`")
            })?;
        }
        if let Some(h) = c.headers {
            for (k, v) in &h {
                if !valid_header_name(k) {
                    return Err(CoreError::invalid(format!(
                        "header name `{k}` is not allowed"
                    )));
                }
                if !valid_header_value(v) {
                    return Err(CoreError::invalid(format!(
                        "the value of header `{k}` is not a valid header value"
                    )));
                }
            }
            self.headers = h;
        }
        if let Some(t) = c.token {
            if let Some(t) = &t
                && (t.is_empty() || !valid_header_value(t))
            {
                return invalid("`token` must be a non-empty header value");
            }
            self.token = t;
        }
        if let Some(h) = c.token_header {
            if let Some(h) = &h
                && !valid_header_name(h)
            {
                return Err(CoreError::invalid(format!(
                    "`token_header` `{h}` is not allowed"
                )));
            }
            self.token_header = h;
        }
        if let Some(b) = c.insecure_tls {
            self.insecure_tls = b;
        }
        if let Some(t) = c.timeout_ms {
            check_timeout(t)?;
            self.timeout_ms = t;
        }
        if let Some(rs) = c.retry_schedule_s {
            if let Some(rs) = &rs {
                crate::retry::validate_schedule(rs)?;
            }
            self.retry_schedule_s = rs;
        }
        match c.ordered {
            Some(true) if self.ordering.is_none() => {
                self.ordering = Some(Ordering {
                    key: OrderingKey::Entity,
                    on_head_failure: HeadFailure::Skip,
                })
            }
            Some(false) => self.ordering = None,
            _ => {}
        }
        if c.ordering_key.is_some() || c.on_head_failure.is_some() {
            let Some(o) = self.ordering.as_mut() else {
                return invalid("`ordering_key` and `on_head_failure` need `ordered: true`");
            };
            if let Some(k) = &c.ordering_key {
                o.key = OrderingKey::parse(k)?;
            }
            if let Some(h) = &c.on_head_failure {
                o.on_head_failure = HeadFailure::parse(h)?;
            }
        }
        if let Some(r) = c.max_rps {
            if r == Some(0) {
                return invalid("`max_rps` must be at least 1 (or null for unlimited)");
            }
            self.max_rps = r;
        }
        if let Some(m) = c.max_in_flight {
            if m == 0 || m > MAX_IN_FLIGHT {
                return Err(CoreError::invalid(format!(
                    "`max_in_flight` must be 1–{MAX_IN_FLIGHT}"
                )));
            }
            self.max_in_flight = m;
        }
        let scheme = c
            .signing
            .as_deref()
            .map(Scheme::parse_setting)
            .transpose()?;
        if change == Change::Patch {
            if c.secret.is_some() {
                return invalid("change the secret with POST …/rotate-secret");
            }
            if scheme.is_some_and(|s| s != self.scheme()) {
                return invalid(
                    "change the signing scheme with POST …/rotate-secret and `signing`, so that receivers get both signatures while they switch",
                );
            }
        } else {
            let secret = match c.secret {
                Some(given) => {
                    let secret = SigningSecret::parse(&given)?;
                    if scheme.is_some_and(|s| s != secret.scheme()) {
                        return invalid(
                            "`secret` does not match `signing` (`whsec_` is hmac, `whsk_` is ed25519)",
                        );
                    }
                    secret
                }
                None => SigningSecret::generate_for(scheme.unwrap_or(Scheme::Hmac)),
            };
            self.secrets = vec![KeyedSecret {
                secret,
                expires_at: None,
            }];
        }
        if let Some(e) = c.enabled {
            self.enabled = e;
            if e {
                self.disabled_reason = None;
            } else if self.disabled_reason.is_none() {
                self.disabled_reason = Some("disabled through the API".into());
            }
        }
        Ok(())
    }

    /// Makes a new signing key current at `now`: `rotation.secret`, or one generated for
    /// `rotation.scheme` (default: the current scheme). Keys it replaces keep signing beside it
    /// until `rotation.old_expires_at` (default: [`ROTATION_OVERLAP_MS`] from now; now or
    /// earlier retires them at once), or their own earlier expiry, so receivers can switch
    /// over; expired ones are dropped.
    pub fn rotate_secret(&mut self, rotation: Rotation, now: i64) -> Result<(), CoreError> {
        let scheme = rotation.scheme.unwrap_or_else(|| self.scheme());
        let fresh = match rotation.secret {
            Some(s) if s.scheme() != scheme => {
                return Err(CoreError::invalid(
                    "`secret` does not match `signing` (`whsec_` is hmac, `whsk_` is ed25519)",
                ));
            }
            Some(s) => s,
            None => SigningSecret::generate_for(scheme),
        };
        let retire_at = rotation.old_expires_at.unwrap_or(now + ROTATION_OVERLAP_MS);
        let mut secrets = vec![KeyedSecret {
            secret: fresh,
            expires_at: None,
        }];
        for old in self.secrets.drain(..) {
            let expires = old.expires_at.map_or(retire_at, |e| e.min(retire_at));
            if expires > now {
                secrets.push(KeyedSecret {
                    secret: old.secret,
                    expires_at: Some(expires),
                });
            }
        }
        self.secrets = secrets;
        self.updated_at = now;
        Ok(())
    }
}

/// A key rotation: what [`Endpoint::rotate_secret`] makes current and when the old keys stop.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// The caller's own new key; generated when absent.
    pub secret: Option<SigningSecret>,
    /// The scheme of the new key (default: the endpoint's current scheme).
    pub scheme: Option<Scheme>,
    /// When the replaced keys stop signing (milliseconds since the epoch).
    pub old_expires_at: Option<i64>,
}

/// A request timeout an endpoint or an executor may have.
pub fn check_timeout(ms: u32) -> Result<(), CoreError> {
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(CoreError::invalid(format!(
            "`timeout_ms` must be 1–{MAX_TIMEOUT_MS}"
        )));
    }
    Ok(())
}

/// Checks a destination URL as far as it can be checked before sending: it parses, carries no
/// credentials, and its scheme and IP literal (if any) pass `policy`.
pub fn check_destination(url: &str, policy: &EgressPolicy) -> Result<(), CoreError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| CoreError::invalid(format!("`url` is not a valid URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CoreError::invalid(
            "`url` must not carry credentials; use `headers` or `token`",
        ));
    }
    policy.check_url(&parsed)
}

/// A header name a tenant may set: a token, and none the hub sets itself.
pub fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 100
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !matches!(
            n.to_ascii_lowercase().as_str(),
            "host"
                | "content-length"
                | "content-type"
                | "transfer-encoding"
                | "connection"
                | "webhook-id"
                | "webhook-timestamp"
                | "webhook-signature"
        )
}

/// A header value a tenant may set: visible ASCII and tabs, at most 4 KiB.
pub fn valid_header_value(v: &str) -> bool {
    v.len() <= 4096 && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> crate::ids::OrgId {
        crate::ids::OrgId::stored("o".into())
    }

    fn policy() -> EgressPolicy {
        EgressPolicy {
            allow: vec![],
            require_https: false,
        }
    }

    #[test]
    fn a_create_needs_a_url_and_checks_every_field() {
        let mut ep = Endpoint::new(&o(), 1);
        let err = ep
            .apply(EndpointChanges::default(), Change::Create, &policy())
            .unwrap_err();
        assert!(err.to_string().contains("`url` is required"), "{err}");
        let bad = [
            EndpointChanges {
                url: Some("https://10.0.0.1/x".into()),
                ..Default::default()
            },
            EndpointChanges {
                url: Some("https://u:p@example.com/".into()),
                ..Default::default()
            },
            EndpointChanges {
                timeout_ms: Some(0),
                ..Default::default()
            },
            EndpointChanges {
                headers: Some(BTreeMap::from([("webhook-id".into(), "x".into())])),
                ..Default::default()
            },
            EndpointChanges {
                max_rps: Some(Some(0)),
                ..Default::default()
            },
        ];
        for c in bad {
            let mut ep = Endpoint::new(&o(), 1);
            ep.url = "https://example.com/".into();
            assert!(
                ep.apply(c.clone(), Change::Create, &policy()).is_err(),
                "{c:?}"
            );
        }
        let mut ep = Endpoint::new(&o(), 1);
        ep.apply(
            EndpointChanges {
                url: Some("https://example.com/hook".into()),
                timeout_ms: Some(500),
                enabled: Some(false),
                ..Default::default()
            },
            Change::Create,
            &policy(),
        )
        .expect("valid");
        assert_eq!(ep.timeout_ms, 500);
        assert_eq!(
            ep.disabled_reason.as_deref(),
            Some("disabled through the API")
        );
    }

    #[test]
    fn a_patch_cannot_set_the_secret() {
        let mut ep = Endpoint::new(&o(), 1);
        let c = EndpointChanges {
            secret: Some(SigningSecret::generate().expose()),
            ..Default::default()
        };
        assert!(ep.apply(c, Change::Patch, &policy()).is_err());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_overlap() {
        let mut ep = Endpoint::new(&o(), 0);
        let old = ep.secrets[0].secret.clone();
        ep.rotate_secret(Rotation::default(), 1000).expect("rotate");
        assert_eq!(ep.secrets.len(), 2);
        assert_eq!(ep.secrets[1].secret, old);
        assert_eq!(ep.secrets[1].expires_at, Some(1000 + ROTATION_OVERLAP_MS));
        // Past the overlap the old one is gone at the next rotation.
        ep.rotate_secret(Rotation::default(), 1000 + ROTATION_OVERLAP_MS + 1)
            .expect("rotate");
        assert_eq!(
            ep.secrets.len(),
            2,
            "the current one and the one just replaced"
        );
        assert!(ep.secrets.iter().all(|s| s.secret != old));
    }
}
