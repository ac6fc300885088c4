//! The egress policy: which destination addresses Switchyard may connect to.
//!
//! Webhook URLs are chosen by tenants, so without a guard they could reach the hub's own
//! network: loopback services, private ranges, link-local and cloud metadata endpoints. The
//! delivery engine applies this policy to every address a hostname resolves to and connects
//! only to an address that passed (no DNS-rebinding window).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The operator's policy: addresses in `allow` are exempt from the private-address guard.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    pub allow: Vec<IpNet>,
    pub require_https: bool,
}

impl EgressPolicy {
    /// Checks what can be checked of a URL before resolving it: the scheme, and a host written
    /// as an IP literal. Host names are checked when resolved, address by address.
    pub fn check_url(&self, url: &url::Url) -> Result<(), crate::CoreError> {
        use crate::CoreError::Refused;
        match url.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            "http" => return Err(Refused("this instance requires https".into())),
            other => return Err(Refused(format!("unsupported scheme `{other}`"))),
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(Refused("the URL has no host".into())),
        }
    }

    /// `Err` (with the reason) if connecting to `ip` is forbidden.
    pub fn check(&self, ip: IpAddr) -> Result<(), crate::CoreError> {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            Some(kind) => Err(crate::CoreError::Refused(format!(
                "destination {ip} is a {kind} address and is not allow-listed (see --allow-destination)"
            ))),
            None => Ok(()),
        }
    }
}

/// The IPv4 ranges refused, from the IANA IPv4 Special-Purpose Address Registry (plus
/// multicast and cloud metadata addresses): network, prefix length, what it is. Ranges the
/// registry marks globally reachable (AS112, AMT) are ordinary destinations and not listed.
pub const SPECIAL_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "cloud-metadata"),
    (Ipv4Addr::new(100, 100, 100, 200), 32, "cloud-metadata"),
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "unspecified (\"this network\")",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared (carrier-grade NAT)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignment"),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation (TEST-NET-1)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast (deprecated)",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation (TEST-NET-2)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation (TEST-NET-3)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
];

/// The IPv6 ranges refused, from the IANA IPv6 Special-Purpose Address Registry. Ranges that
/// embed an IPv4 address a relay or translator would reach (6to4, Teredo, IPv4-compatible) are
/// refused whole; IPv4-mapped and well-known NAT64 addresses are judged by the IPv4 address they
/// carry (see [`classify`]). Anything outside global unicast `2000::/3` is refused as well.
pub const SPECIAL_V6: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        128,
        "cloud-metadata",
    ),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "IPv4-compatible (deprecated)",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "dummy prefix",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo (embeds IPv4)",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignment",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        "6to4 (embeds IPv4)",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "segment routing (SRv6)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "private (unique local)",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (deprecated)",
    ),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// Names the forbidden class `ip` belongs to, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let seg = v6.segments();
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // Well-known NAT64 translates to the IPv4 address it carries.
                let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = v6.octets();
                return classify_v4(Ipv4Addr::new(a, b, c, d));
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    SPECIAL_V4.iter().find_map(|(net, len, name)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u32::from(*net) & mask).then_some(*name)
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let special = SPECIAL_V6.iter().find_map(|(net, len, name)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u128::from(*net) & mask).then_some(*name)
    });
    // Only 2000::/3 is allocated for global unicast; the rest is reserved or special.
    special.or_else(|| (bits >> 125 != 0b001).then_some("reserved (outside 2000::/3)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        EgressPolicy::default()
            .check(s.parse().expect("ip"))
            .is_err()
    }

    #[test]
    fn private_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "::8.8.8.8",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "2001:db8::1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.0.171",
            "4000::1",
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "172.32.0.1",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "192.31.196.1",
        ] {
            assert!(!forbidden(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn every_listed_range_is_refused_at_its_first_and_last_address() {
        for (net, len, name) in SPECIAL_V4 {
            let first = u32::from(*net);
            let last = first | u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [first, last] {
                assert!(classify(IpAddr::V4(Ipv4Addr::from(ip))).is_some(), "{name}");
            }
        }
        for (net, len, name) in SPECIAL_V6 {
            let first = u128::from(*net);
            let last = first | u128::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [first, last] {
                assert!(classify(IpAddr::V6(Ipv6Addr::from(ip))).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn allow_list_exempts() {
        let p = EgressPolicy {
            allow: vec!["127.0.0.0/8".parse().expect("cidr")],
            require_https: false,
        };
        assert!(p.check("127.0.0.1".parse().expect("ip")).is_ok());
        let err = p.check("10.0.0.1".parse().expect("ip")).unwrap_err();
        assert!(err.to_string().contains("private"), "{err}");
    }
}
