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
    /// `Err(reason)` if connecting to `ip` is forbidden.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            Some(kind) => Err(format!(
                "destination {ip} is a {kind} address and is not allow-listed (see --allow-destination)"
            )),
            None => Ok(()),
        }
    }
}

/// Names the forbidden class `ip` belongs to, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud-metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if seg[0] == 0xfd00 && seg[1] == 0x0ec2 && ip.segments()[7] == 0x254 {
        Some("cloud-metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64 can embed any IPv4 address, including private ones.
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        classify_v4(v4)
    } else {
        None
    }
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
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!forbidden(ip), "{ip} must be allowed");
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
        assert!(err.contains("private"), "{err}");
    }
}
