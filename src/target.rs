//! Where webhooks may go: the SSRF guard. A URL's host is resolved and every
//! address it resolves to must be public, at endpoint creation and again at
//! every delivery (DNS can change), unless private targets are allowed.
//!
//! At delivery the check is the connection's own resolution ([`PublicResolver`]
//! inside the HTTP client): the address connected to is the address checked,
//! so a name that answers a public address to a check and `127.0.0.1` to the
//! connection (DNS rebinding) cannot reach loopback.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

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
    public_only(addrs, false).map(|_| ())
}

/// Answers the addresses of a host name.
pub trait Lookup: Send + Sync + 'static {
    /// The addresses of `host` (port 0).
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system's resolver (getaddrinfo, on tokio's blocking pool).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A resolver for reqwest that answers a name's addresses only when every
/// one of them is public (or private targets are allowed).
pub struct PublicResolver {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl PublicResolver {
    /// Resolves with `lookup`.
    pub fn new(lookup: Arc<dyn Lookup>, allow_private: bool) -> Self {
        Self { lookup, allow_private }
    }
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (lookup, allow_private) = (self.lookup.clone(), self.allow_private);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookup.lookup(host).await.map_err(|_| TargetError::Unresolvable)?;
            let addrs = public_only(addrs, allow_private)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// `addrs` when they are all public (or private ones are allowed).
fn public_only(addrs: Vec<IpAddr>, allow_private: bool) -> Result<Vec<IpAddr>, TargetError> {
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    match addrs.iter().find(|ip| !allow_private && !is_public(**ip)) {
        Some(ip) => Err(TargetError::NonPublic(*ip)),
        None => Ok(addrs),
    }
}

/// An HTTP client for webhook targets: every name resolved through
/// [`PublicResolver`] with `lookup`, and no proxy from the environment
/// (`HTTPS_PROXY` would move the connection, and its check, elsewhere).
pub fn client(builder: reqwest::ClientBuilder, lookup: Arc<dyn Lookup>, allow_private: bool) -> reqwest::ClientBuilder {
    builder.no_proxy().dns_resolver(PublicResolver::new(lookup, allow_private))
}

/// For a delivery: an address literal is checked here (the client does not
/// resolve it); a name is checked by the client's resolver as it connects.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(TargetError::BadUrl),
    };
    public_only(vec![ip], allow_private).map(|_| ())
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
        || ip == Ipv4Addr::new(168, 63, 129, 16)    // Azure's host endpoint (wireserver)
        || (a == 192 && b == 88 && c == 99)         // 6to4 relay anycast
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
        || (seg[0] & 0xffc0) == 0xfec0                // site-local fec0::/10 (deprecated, still routed inside)
        || seg[0] == 0x2002                           // 6to4: tunnels to any IPv4, private ones too
        || (seg[0] == 0x2001 && seg[1] == 0)          // Teredo 2001::/32: tunnels to an embedded IPv4
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
            "168.63.129.16",
            "192.88.99.1",
            "fec0::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
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

    /// Answers a public address to the first lookup and loopback after:
    /// a DNS rebinding name.
    struct Rebinding(std::sync::atomic::AtomicUsize);

    impl Lookup for Rebinding {
        fn lookup(&self, _: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ip: IpAddr = if n == 0 { "93.184.216.34".parse().unwrap() } else { Ipv4Addr::LOCALHOST.into() };
            Box::pin(async move { Ok(vec![ip]) })
        }
    }

    #[tokio::test]
    async fn a_rebinding_name_never_reaches_loopback() {
        // A real server on loopback, counting who reaches it. `localhost`
        // resolves to it through the system's resolver, which a client
        // without the filtering resolver would use to connect.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reached.clone();
        tokio::spawn(async move {
            while let Ok((_, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let lookup = Arc::new(Rebinding(Default::default()));
        // The check sees the public answer...
        let first = lookup.lookup("localhost".into()).await.unwrap();
        assert_eq!(public_only(first, false).map(|a| a.len()), Ok(1));
        // ...and the connection's own resolution, the second answer, is refused.
        let builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(2));
        let http = client(builder, lookup, false).build().unwrap();
        let err = http.get(format!("http://localhost:{port}/hook")).send().await.unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            chain.push_str(&format!(": {e}"));
            source = e.source();
        }
        assert!(chain.contains("non-public address (127.0.0.1)"), "{chain}");
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "loopback was reached");
        // With private targets allowed (tests, development) the same client connects.
        let allowed = client(reqwest::Client::builder(), Arc::new(SystemLookup), true).build().unwrap();
        let _ = allowed
            .get(format!("http://localhost:{port}/hook"))
            .timeout(std::time::Duration::from_millis(300))
            .send()
            .await;
        assert!(reached.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the allowed client connects");
    }

    #[test]
    fn literals_are_checked_without_a_lookup() {
        let url = |u: &str| parse_url(u, false).unwrap();
        assert!(matches!(check_literal(&url("http://127.0.0.1:9/"), false), Err(TargetError::NonPublic(_))));
        assert!(matches!(check_literal(&url("http://[fec0::1]/"), false), Err(TargetError::NonPublic(_))));
        assert_eq!(check_literal(&url("http://127.0.0.1:9/"), true), Ok(()));
        assert_eq!(check_literal(&url("http://8.8.8.8/"), false), Ok(()));
        assert_eq!(check_literal(&url("http://example.com/"), false), Ok(()));
    }
}
