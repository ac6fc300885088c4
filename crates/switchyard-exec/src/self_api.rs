//! `sdk.api`: code calls its hub's own API as its organization, with the role its executor
//! declares (`api_role`: viewer or publisher). The hub plugs in a [`SelfApi`], which knows where
//! the API listens and mints a credential for one call; the broker makes the request itself,
//! so the credential never reaches the code, and it is revoked as soon as the call answers.

use std::net::SocketAddr;
use switchyard_core::auth::Role;
use switchyard_core::ids::OrgId;

/// What the hub gives the runner so that code can call its API.
pub trait SelfApi: Send + Sync + 'static {
    /// Where this node's API listens (`None`: it serves none, e.g. a `worker` node).
    fn address(&self) -> Option<SocketAddr>;
    /// A bearer credential acting in `org` with `role`, valid until [`SelfApi::revoke`].
    fn mint(&self, org: &OrgId, role: Role) -> String;
    /// Ends a credential [`SelfApi::mint`] made.
    fn revoke(&self, credential: &str);
}

/// The longest path (with its query) code may ask for.
const MAX_PATH_BYTES: usize = 2048;

/// Checks a path code asked for under `/v1/orgs/{org}`: it starts with `/`, has no `..`,
/// `//`, `\`, `%`-escapes or fragment before its query, and no control characters, so it
/// can only name a resource of its own organization.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    let (route, _query) = path.split_once('?').unwrap_or((path, ""));
    let refused = |why: &str| Err(format!("`path` {why}: `{path}`"));
    if path.len() > MAX_PATH_BYTES {
        return refused("is too long");
    }
    if !route.starts_with('/') {
        return refused("must start with `/` (it is under /v1/orgs/{org})");
    }
    if route.split('/').any(|seg| seg == "..")
        || route.contains("//")
        || route.contains(['\\', '%', '#'])
        || path.chars().any(char::is_control)
    {
        return refused("may name only a resource of this organization");
    }
    Ok(())
}

/// Where a call for `org` and `path` goes: an unspecified listening address is reached on the
/// loopback of its family.
pub(crate) fn url_for(addr: SocketAddr, org: &OrgId, path: &str) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/v1/orgs/{org}{path}",
        SocketAddr::new(ip, addr.port())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_only_the_organizations_own_resources() {
        for ok in [
            "/events",
            "/events/e-1",
            "/events?limit=5&type=a.b",
            "/event-types",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "events",
            "/../other/events",
            "/events/../../other",
            "/events//x",
            "/events/%2e%2e/x",
            "/events\\x",
            "/events#x",
            "/events\n",
            "",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&format!("/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn an_unspecified_address_is_reached_on_the_loopback() {
        let org = OrgId::stored("acme".into());
        let any: SocketAddr = "0.0.0.0:8700".parse().expect("addr");
        assert_eq!(
            url_for(any, &org, "/events"),
            "http://127.0.0.1:8700/v1/orgs/acme/events"
        );
        let v6: SocketAddr = "[::]:8700".parse().expect("addr");
        assert_eq!(url_for(v6, &org, "/x"), "http://[::1]:8700/v1/orgs/acme/x");
        let own: SocketAddr = "10.0.0.5:80".parse().expect("addr");
        assert_eq!(
            url_for(own, &org, "/x"),
            "http://10.0.0.5:80/v1/orgs/acme/x"
        );
    }
}
