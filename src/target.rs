//! Where webhooks may go: the SSRF guard. A URL's host is resolved and every
//! address it resolves to must be public, at endpoint creation and again at
//! every delivery (DNS can change), unless private targets are allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Why a target is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("url must be an absolute http or https URL")]
    BadUrl,
    #[error("url must use https in live mode")]
    HttpsRequired,
    #[error("url host could not be resolved")]
    Unresolvable,
    #[error("url resolves to a non-public address ({0})")]
    NonPublic(IpAddr),
}

/// Parses a webhook URL: absolute, http(s), with a host, no credentials.
pub fn parse_url(raw: &str, livemode: bool) -> Result<Url, TargetError> {
    let url = Url::parse(raw).map_err(|_| TargetError::BadUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if !livemode => {}
        "http" => return Err(TargetError::HttpsRequired),
        _ => return Err(TargetError::BadUrl),
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::BadUrl);
    }
    Ok(url)
}

/// Resolves the URL's host and refuses it if any address is not public.
pub async fn check(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().ok_or(TargetError::BadUrl)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|_| TargetError::Unresolvable)?.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    match addrs.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(TargetError::NonPublic(ip)),
        None => Ok(()),
    }
}

/// True for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                   // "this network"
        || (a == 100 && (64..128).contains(&b))     // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // benchmarking 198.18/15
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00                // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80                // link-local fe80::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)     // documentation
        || (seg[0] == 0x0064 && seg[1] == 0xff9b)     // NAT64 (may reach private v4)
        || seg[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "0.0.0.0",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(parse_url("https://example.com/hook", true).is_ok());
        assert!(parse_url("http://example.com/hook", false).is_ok());
        assert_eq!(parse_url("http://example.com/hook", true), Err(TargetError::HttpsRequired));
        assert_eq!(parse_url("ftp://example.com", false), Err(TargetError::BadUrl));
        assert_eq!(parse_url("not a url", false), Err(TargetError::BadUrl));
        assert_eq!(parse_url("https://user:pw@example.com", false), Err(TargetError::BadUrl));
    }

    #[tokio::test]
    async fn literal_private_hosts_are_refused_unless_allowed() {
        let url = parse_url("http://127.0.0.1:9/hook", false).unwrap();
        assert!(matches!(check(&url, false).await, Err(TargetError::NonPublic(_))));
        assert!(check(&url, true).await.is_ok());
        let url = parse_url("http://[::1]:9/hook", false).unwrap();
        assert!(matches!(check(&url, false).await, Err(TargetError::NonPublic(_))));
        let url = parse_url("http://localhost:9/hook", false).unwrap();
        assert!(matches!(check(&url, false).await, Err(TargetError::NonPublic(_))));
    }
}
