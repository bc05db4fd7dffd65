//! The SSRF guard: the gateway never connects to an address that is not on
//! the public internet unless an administrator allow-listed it.
//!
//! Refused by default: loopback (127/8, ::1), private (RFC 1918, ULA
//! fc00::/7), link-local (169.254/16, fe80::/10) — which holds the cloud
//! metadata endpoints 169.254.169.254 and fd00:ec2::254 —, unspecified,
//! CGNAT 100.64/10, "this network" 0/8, benchmarking 198.18/15, the
//! documentation and reserved ranges, broadcast and multicast, and each of
//! those wrapped in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
//!
//! Checked twice. At registration ([`check_url_resolved`]): a literal
//! address is checked as is, a name is resolved and every address checked;
//! a name that does not resolve (yet) passes, since it is checked again at
//! connect time. At connect time ([`GuardedConnector`]): the name is
//! resolved once, *every* address is checked, and the connection goes to a
//! checked address — never to a second lookup's answer — so DNS rebinding
//! (a name that answered a public address at registration and a private
//! one now) cannot reach inside.
//!
//! Redirects: the upstream client is hyper's, which never follows them; a
//! 3xx from an upstream is an upstream error (tests/ssrf.rs proves it).
//!
//! [`AllowList`] entries are CIDRs (any port) or exact socket addresses
//! (`convergio serve` allows exactly the loopback sockets its own example
//! agents listen on, so nothing else on loopback is reachable by default).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use convergio_registry::{UpstreamCheck, UpstreamRefusal};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;
use url::Url;

/// Why an address or URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// The URL cannot be parsed or has no host.
    #[error("not a usable url: {reason}")]
    BadUrl {
        /// What is wrong.
        reason: String,
    },
    /// The host is, or resolves to, an address outside the public internet
    /// that is not allow-listed.
    #[error("{host} resolves to {address} ({class}), which is not allow-listed")]
    Refused {
        /// The host as written.
        host: String,
        /// The refused address.
        address: IpAddr,
        /// Which range it is in.
        class: &'static str,
    },
    /// The name did not resolve to any address (connect time only).
    #[error("{host} does not resolve: {reason}")]
    Unresolvable {
        /// The host as written.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// An allow-list entry is not a CIDR or socket address.
    #[error("{entry:?} is not a CIDR (10.0.0.0/8, fd00::/8) or an address")]
    BadEntry {
        /// The rejected entry.
        entry: String,
    },
}

/// Addresses the gateway may connect to although they are not public.
///
/// Clones share one live list: [`AllowList::replace`] on any of them (a
/// configuration reload, issue 22) changes what every clone permits from
/// its next check on. Building a list (`parse`, `allow_socket`,
/// `allow_cidr`) gives the built value a list of its own, so a list built
/// from a clone never changes the original.
#[derive(Clone, Default)]
pub struct AllowList {
    entries: Arc<ArcSwap<AllowEntries>>,
}

/// One version of an allow-list's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AllowEntries {
    cidrs: Vec<IpNet>,
    sockets: Vec<SocketAddr>,
}

// === impl AllowList ===

impl AllowList {
    /// Nothing allowed beyond the public internet (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every loopback address, IPv4 and IPv6 (tests whose upstreams run on
    /// 127.0.0.1 use this, explicitly).
    pub fn loopback() -> Self {
        Self::parse(["127.0.0.0/8", "::1/128"]).expect("static CIDRs parse")
    }

    /// Parses CIDRs (`10.0.0.0/8`), bare addresses (a /32 or /128) and
    /// socket addresses (`127.0.0.1:9101`, exactly that port).
    pub fn parse<I, S>(entries: I) -> Result<Self, SsrfError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowEntries::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if let Ok(cidr) = IpNet::from_str(entry) {
                list.cidrs.push(cidr.trunc());
            } else if let Ok(address) = IpAddr::from_str(entry) {
                list.cidrs.push(IpNet::from(address));
            } else if let Ok(socket) = SocketAddr::from_str(entry) {
                list.sockets.push(socket);
            } else {
                return Err(SsrfError::BadEntry {
                    entry: entry.to_owned(),
                });
            }
        }
        Ok(Self::of(list))
    }

    fn of(entries: AllowEntries) -> Self {
        Self {
            entries: Arc::new(ArcSwap::from_pointee(entries)),
        }
    }

    /// Also allows exactly `socket` (this value only: see the type's doc).
    pub fn allow_socket(&mut self, socket: SocketAddr) {
        let mut entries = AllowEntries::clone(&self.entries.load());
        entries.sockets.push(socket);
        *self = Self::of(entries);
    }

    /// Also allows every address in `cidr` (this value only).
    pub fn allow_cidr(&mut self, cidr: IpNet) {
        let mut entries = AllowEntries::clone(&self.entries.load());
        entries.cidrs.push(cidr.trunc());
        *self = Self::of(entries);
    }

    /// Makes this list, and every clone of it, permit exactly what `other`
    /// permits now.
    pub fn replace(&self, other: &AllowList) {
        self.entries.store(other.entries.load_full());
    }

    /// Whether nothing is allowed beyond the public internet.
    pub fn is_empty(&self) -> bool {
        let entries = self.entries.load();
        entries.cidrs.is_empty() && entries.sockets.is_empty()
    }

    /// Whether `socket` is allowed: public, or listed.
    pub fn permits(&self, socket: SocketAddr) -> Result<(), &'static str> {
        let Some(class) = non_public(socket.ip()) else {
            return Ok(());
        };
        let ip = canonical(socket.ip());
        let entries = self.entries.load();
        let listed = entries.cidrs.iter().any(|cidr| cidr.contains(&ip))
            || entries
                .sockets
                .iter()
                .any(|allowed| canonical(allowed.ip()) == ip && allowed.port() == socket.port());
        if listed {
            Ok(())
        } else {
            Err(class)
        }
    }
}

impl PartialEq for AllowList {
    fn eq(&self, other: &Self) -> bool {
        *self.entries.load() == *other.entries.load()
    }
}

impl Eq for AllowList {}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.load();
        f.debug_struct("AllowList")
            .field("cidrs", &entries.cidrs)
            .field("sockets", &entries.sockets)
            .finish()
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed = self.entries.load();
        let entries: Vec<String> = listed
            .cidrs
            .iter()
            .map(ToString::to_string)
            .chain(listed.sockets.iter().map(ToString::to_string))
            .collect();
        if entries.is_empty() {
            f.write_str("public addresses only")
        } else {
            write!(f, "public addresses and {}", entries.join(", "))
        }
    }
}

/// An IPv4 address wrapped in IPv6 (mapped, compatible, NAT64, 6to4) as the
/// IPv4 address it reaches; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = v6.segments();
    let octets = v6.octets();
    let last_four = || Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks);
    // :: and ::1 are themselves, not IPv4.
    if segments[..6] == [0; 6] && u32::from(last_four()) > 1 {
        return Some(last_four());
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last_four());
    }
    // 6to4 2002:a.b.c.d::/48.
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

/// Which non-public range `ip` is in, or `None` for a public address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this network",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(class)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    let class = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        "cloud metadata"
    } else if first & 0xfe00 == 0xfc00 {
        "unique local (private)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local"
    } else if first & 0xff00 == 0xff00 {
        "multicast"
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        "documentation"
    } else if first == 0x0100 && ip.segments()[1..4] == [0, 0, 0] {
        "discard-only"
    } else {
        return None;
    };
    Some(class)
}

/// Parses an upstream URL; a bare `host:port` (gRPC interfaces) is read as
/// `http://host:port`.
pub fn parse_url(text: &str) -> Result<Url, SsrfError> {
    let with_scheme;
    let text = if text.contains("://") {
        text
    } else {
        with_scheme = format!("http://{text}");
        &with_scheme
    };
    Url::parse(text).map_err(|error| SsrfError::BadUrl {
        reason: error.to_string(),
    })
}

/// The host and port `url` connects to.
fn host_and_port(url: &Url) -> Result<(String, u16), SsrfError> {
    let host = url.host_str().ok_or_else(|| SsrfError::BadUrl {
        reason: "the url has no host".to_owned(),
    })?;
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// Checks `url` without resolving names: a literal address (and the name
/// `localhost`) must be public or allow-listed; other names pass here and
/// are checked when resolved ([`check_url_resolved`], [`GuardedConnector`]).
pub fn check_url(url: &Url, allow: &AllowList) -> Result<(), SsrfError> {
    let (host, port) = host_and_port(url)?;
    let literal = match IpAddr::from_str(&host) {
        Ok(ip) => Some(ip),
        Err(_) if is_localhost(&host) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Err(_) => None,
    };
    match literal {
        Some(ip) => check_address(&host, SocketAddr::new(ip, port), allow),
        None => Ok(()),
    }
}

/// How long registration waits for a name to resolve.
const REGISTRATION_LOOKUP: Duration = Duration::from_secs(3);

/// [`check_url`], then every address a name resolves to. A name that does
/// not resolve (within 3 s) passes: it is checked again at connect time.
pub async fn check_url_resolved(url: &Url, allow: &AllowList) -> Result<(), SsrfError> {
    check_url(url, allow)?;
    let (host, port) = host_and_port(url)?;
    if IpAddr::from_str(&host).is_ok() {
        return Ok(());
    }
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let resolved: Vec<SocketAddr> = match tokio::time::timeout(REGISTRATION_LOOKUP, lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(_)) | Err(_) => Vec::new(),
    };
    for address in resolved {
        check_address(&host, address, allow)?;
    }
    Ok(())
}

fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn check_address(host: &str, address: SocketAddr, allow: &AllowList) -> Result<(), SsrfError> {
    allow.permits(address).map_err(|class| SsrfError::Refused {
        host: host.to_owned(),
        address: address.ip(),
        class,
    })
}

/// Resolves `host:port` once and checks every address; the connection must
/// then go to one of the returned addresses.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow: &AllowList,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let addresses: Vec<SocketAddr> = match IpAddr::from_str(host) {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| SsrfError::Unresolvable {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(SsrfError::Unresolvable {
            host: host.to_owned(),
            reason: "no addresses".to_owned(),
        });
    }
    for address in &addresses {
        check_address(host, *address, allow)?;
    }
    Ok(addresses)
}

/// The resolver of the federation's HTTP client (JWKS fetches, federated
/// discovery, catalogue sync): a name is resolved once and refused when any
/// address is not public and not allow-listed. IP literals never reach a
/// resolver, so peer URLs are also checked with [`check_url`] when stored.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub AllowList);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.0.clone();
        Box::pin(async move {
            // Port 0: the client sets the URL's port on every address.
            let addresses = resolve_checked(name.as_str(), 0, &allow).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The registration-time check the registry asks ([`UpstreamCheck`]).
#[async_trait::async_trait]
impl UpstreamCheck for AllowList {
    async fn check(&self, url: &str) -> Result<(), UpstreamRefusal> {
        let url = parse_url(url)?;
        Ok(check_url_resolved(&url, self).await?)
    }
}

/// An HTTP connector that resolves, checks every address against the
/// [`AllowList`], and connects only to checked addresses (wrapping hyper's
/// `HttpConnector`, which is handed literal addresses only).
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    inner: HttpConnector,
    allow: Arc<AllowList>,
}

// === impl GuardedConnector ===

impl GuardedConnector {
    /// A connector with `TCP_NODELAY` and a 5 s connect timeout per address.
    pub fn new(allow: AllowList) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            inner,
            allow: Arc::new(allow),
        }
    }

    /// The allow-list it enforces.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Uri>::poll_ready(&mut self.inner, context).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = destination
                .host()
                .ok_or_else(|| SsrfError::BadUrl {
                    reason: "the url has no host".to_owned(),
                })?
                .trim_matches(['[', ']'])
                .to_owned();
            let default_port = match destination.scheme_str() {
                Some("https") => 443,
                _ => 80,
            };
            let port = destination.port_u16().unwrap_or(default_port);
            let addresses = resolve_checked(&host, port, &allow).await?;
            let mut last_error: Option<BoxError> = None;
            for address in addresses {
                let literal = match address {
                    SocketAddr::V4(v4) => format!("http://{v4}"),
                    SocketAddr::V6(v6) => format!("http://[{}]:{}", v6.ip(), v6.port()),
                };
                let uri = Uri::try_from(literal).map_err(|error| Box::new(error) as BoxError)?;
                match tower::Service::<Uri>::call(&mut inner, uri).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => last_error = Some(Box::new(error)),
                }
            }
            Err(last_error.unwrap_or_else(|| "no address to connect to".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str, allow: &AllowList) -> bool {
        let url = parse_url(text).expect("url");
        matches!(check_url(&url, allow), Err(SsrfError::Refused { .. }))
    }

    #[test]
    fn refuses_every_non_public_range_without_an_allow_list() {
        let none = AllowList::none();
        for url in [
            "http://127.0.0.1:9101/a2a",
            "http://127.8.9.10/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.10.1/",
            "http://100.64.0.1/",
            "http://100.127.255.255/",
            "http://0.0.0.0:80/",
            "http://0.1.2.3/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]:9000/",
            "http://[::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::10.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:a00:1::]/",
            "http://[ff02::1]/",
            "10.0.0.1:50051",
        ] {
            assert!(refused(url, &none), "{url} must be refused");
        }
    }

    #[test]
    fn lets_public_addresses_and_names_through() {
        let none = AllowList::none();
        for url in [
            "https://93.184.215.14/a2a",
            "http://8.8.8.8:8080/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "https://agents.example.com/a2a",
        ] {
            let parsed = parse_url(url).expect("url");
            assert_eq!(check_url(&parsed, &none), Ok(()), "{url}");
        }
    }

    #[test]
    fn a_replaced_allow_list_reaches_every_clone_but_not_lists_built_from_it() {
        let shared = AllowList::none();
        let clone = shared.clone();
        let mut built = shared.clone();
        built.allow_socket("127.0.0.1:9101".parse().expect("socket"));
        assert!(refused("http://10.1.2.3/", &clone));
        shared.replace(&AllowList::parse(["10.0.0.0/8"]).expect("parses"));
        assert!(!refused("http://10.1.2.3/", &clone), "the clone follows");
        assert!(
            refused("http://10.1.2.3/", &built),
            "a built list is its own"
        );
        assert!(!refused("http://127.0.0.1:9101/", &built));
    }

    #[test]
    fn allow_list_takes_cidrs_addresses_and_exact_sockets() {
        let allow = AllowList::parse(["10.0.0.0/8", "fd00::/8", "192.168.1.7", "127.0.0.1:9101"])
            .expect("parses");
        for url in [
            "http://10.200.0.1/",
            "http://[fd00::5]/",
            "http://192.168.1.7:1234/",
            "http://127.0.0.1:9101/a2a",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(!refused(url, &allow), "{url} is allowed");
        }
        for url in [
            "http://127.0.0.1:9102/",
            "http://192.168.1.8/",
            "http://169.254.169.254/",
            "http://[::1]:9101/",
        ] {
            assert!(refused(url, &allow), "{url} is not allowed");
        }
        assert!(!refused("http://[::1]:1/", &AllowList::loopback()));
        assert!(matches!(
            AllowList::parse(["10.0.0.0/33"]),
            Err(SsrfError::BadEntry { .. })
        ));
        assert!(matches!(
            AllowList::parse(["intranet"]),
            Err(SsrfError::BadEntry { .. })
        ));
    }

    #[test]
    fn bad_urls_are_refused_as_such() {
        assert!(matches!(
            parse_url("http://"),
            Err(SsrfError::BadUrl { .. })
        ));
        let no_host = Url::parse("data:text/plain,hi").expect("url");
        assert!(matches!(
            check_url(&no_host, &AllowList::none()),
            Err(SsrfError::BadUrl { .. })
        ));
    }

    #[tokio::test]
    async fn resolution_checks_every_address() {
        let none = AllowList::none();
        let refused = resolve_checked("localhost", 80, &none)
            .await
            .expect_err("localhost resolves to loopback");
        assert!(matches!(refused, SsrfError::Refused { .. }), "{refused:?}");
        let allowed = resolve_checked("localhost", 80, &AllowList::loopback()).await;
        assert!(allowed.is_ok_and(|addresses| !addresses.is_empty()));
        assert!(matches!(
            resolve_checked("no-such-host.invalid", 80, &none).await,
            Err(SsrfError::Unresolvable { .. })
        ));
    }
}
