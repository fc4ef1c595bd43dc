//! The rebinding defence: the names an agent may reach are checked by the allowlist, but a name can
//! point anywhere. Every address a name resolves to is checked before ureq connects, and ureq
//! connects only to the addresses checked here, so a name that resolves to a public address for
//! the check and to 127.0.0.1 for the connection cannot happen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use super::NetError;

/// Why an address is not public, or `None` when it is: loopback, private ranges, link-local (cloud
/// metadata services live there), shared (CGNAT), multicast, documentation and reserved ranges, and
/// IPv6 forms that embed one of these IPv4 addresses.
pub(super) fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, _, _) => "loopback",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (0, _, _) => "unspecified",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        (192, 0, 0) | (198, 18..=19, _) => "reserved",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Some("unspecified"),
        [0, 0, 0, 0, 0, 0, 0, 1] => Some("loopback"),
        // IPv4-compatible (deprecated) and NAT64 addresses reach the IPv4 address they embed.
        [0, 0, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => non_public_v4(embedded_v4(hi, lo)),
        // 6to4 carries its IPv4 address in the second and third segments.
        [0x2002, hi, lo, ..] => non_public_v4(embedded_v4(hi, lo)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("private (unique local)"),
        [first, ..] if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 => Some("link-local"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast"),
        [0x2001, 0x0db8, ..] => Some("documentation"),
        [0x0100, 0, 0, 0, ..] => Some("reserved"),
        _ => None,
    }
}

/// ureq's resolver, followed by the check of every address it found (when `refuse_non_public`).
#[derive(Debug)]
pub(super) struct GuardedResolver {
    pub refuse_non_public: bool,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        if self.refuse_non_public {
            if let Some((ip, kind)) = addrs.iter().find_map(|a| non_public(a.ip()).map(|k| (a.ip(), k))) {
                let host = uri.host().unwrap_or_default().to_string();
                let refused = NetError::NonPublicAddress { host, ip, kind };
                return Err(ureq::Error::Io(std::io::Error::other(refused)));
            }
        }
        Ok(addrs)
    }
}

/// The guard's refusal, if that is what ureq's error carries.
pub(super) fn refusal(error: ureq::Error) -> Result<NetError, ureq::Error> {
    match error {
        ureq::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<NetError>()) => {
            match io.into_inner().map(|e| e.downcast::<NetError>()) {
                Some(Ok(refused)) => Ok(*refused),
                // Unreachable: checked just above; keep a plain error rather than panic.
                _ => Err(ureq::Error::ConnectionFailed),
            }
        }
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        non_public(ip.parse().unwrap())
    }

    #[test]
    fn loopback_private_link_local_and_friends_are_not_public() {
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("127.255.1.2"), Some("loopback"));
        assert_eq!(kind("10.1.2.3"), Some("private"));
        assert_eq!(kind("172.16.0.1"), Some("private"));
        assert_eq!(kind("172.31.255.255"), Some("private"));
        assert_eq!(kind("192.168.1.1"), Some("private"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("100.64.0.1"), Some("shared (carrier-grade NAT)"));
        assert_eq!(kind("0.0.0.0"), Some("unspecified"));
        assert_eq!(kind("224.0.0.1"), Some("multicast"));
        assert_eq!(kind("255.255.255.255"), Some("reserved"));
        assert_eq!(kind("::1"), Some("loopback"));
        assert_eq!(kind("::"), Some("unspecified"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(kind("64:ff9b::a00:1"), Some("private"));
        assert_eq!(kind("2002:7f00:1::"), Some("loopback"));
        assert_eq!(kind("fd00::1"), Some("private (unique local)"));
        assert_eq!(kind("fe80::1"), Some("link-local"));
        assert_eq!(kind("ff02::1"), Some("multicast"));
    }

    #[test]
    fn public_addresses_pass() {
        for ip in
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700::1111", "2002:808:808::"]
        {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }
}
