//! Outbound HTTP for plugins: the host sends what a trigger is granted, and nothing else.
//!
//! A request goes out only when the trigger's grants (`--allow-host`) and the server's
//! allow-list (`--egress-allow`) both allow its scheme, host and port. The host makes
//! the connection and does TLS, verifying the certificate against the machine's roots
//! (and those the operator adds); the plugin never sees a socket. Each request is
//! bounded: a time-out within the invocation's wall time, a response size, a number per
//! invocation (counted by the executor).
//!
//! The request's URL is made of the permitted scheme, host and port and the plugin's
//! path and query, checked to change none of them. Names are resolved by the host, and a
//! request never reaches an address its grant does not name: a destination that the
//! server's list names itself, scheme and port included (`hooks.slack.com:443`,
//! `localhost:8181`), may resolve to any address, as the operator chose it, but one
//! allowed only through a wildcard (`*.example.com:443`) must resolve to public
//! addresses, so that whoever controls the domain's DNS cannot point a plugin at the
//! loopback, the private network or a cloud's metadata service. Redirects are not
//! followed by the host: the plugin's library follows them, each hop checked again. No
//! connection outlives its request: none is shared between tenants.

mod lookups;

use lookups::Lookups;
use sluice_catalog::{DbId, HostGrant, Scheme, request_host};
use sluice_plugin_api::{
    OutboundFailure, OutboundFailureKind, OutboundRequest, OutboundResponse, size_text,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The server's side of outbound HTTP: its allow-list and the TLS its requests use.
pub struct Egress {
    /// The destinations any trigger may be granted.
    allowed: Arc<Vec<HostGrant>>,
    /// Root certificates trusted besides the machine's.
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Made at start when the allow-list is not empty, else on first use: loading the
    /// machine's roots takes a while.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    /// The name lookups running, bounded.
    lookups: Arc<Lookups>,
}

/// A destination a trigger may send to, as [`Egress::permit`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    scheme: Scheme,
    /// The host, in lower case: a name or an address.
    host: String,
    port: u16,
    /// Whether the server's list names this host, scheme and port itself (or the host is
    /// an address a grant names): then it may resolve to any address, else only to
    /// public ones.
    named: bool,
}

/// Longest the host waits for a connection to be made, within a request's time-out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Request headers the host sets itself, or that describe the plugin's connection and
/// not the request: a plugin's values for them are dropped.
const CONNECTION_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

impl Egress {
    /// Egress within `allowed`, trusting the machine's root certificates and
    /// `extra_roots` (PEM).
    ///
    /// # Errors
    ///
    /// `extra_roots` holds no certificate, or one that does not parse.
    pub fn new(allowed: Vec<HostGrant>, extra_roots: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let extra_roots = if extra_roots.is_empty() {
            Vec::new()
        } else {
            let roots = rustls::pki_types::CertificateDer::pem_slice_iter(extra_roots)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the egress root certificates do not parse: {e}"))?;
            if roots.is_empty() {
                return Err("the egress root certificates file holds no certificate".into());
            }
            roots
        };
        let egress = Self {
            allowed: Arc::new(allowed),
            extra_roots,
            tls: OnceLock::new(),
            lookups: Arc::default(),
        };
        if !egress.allows_nothing()
            && let Err(e) = egress.tls()
        {
            tracing::warn!("plugins' HTTPS requests will fail: {e}");
        }
        Ok(egress)
    }

    /// No egress at all: every request refused.
    pub fn none() -> Self {
        Self {
            allowed: Arc::new(Vec::new()),
            extra_roots: Vec::new(),
            tls: OnceLock::new(),
            lookups: Arc::default(),
        }
    }

    /// Whether the server's allow-list is empty: no outbound HTTP at all.
    pub fn allows_nothing(&self) -> bool {
        self.allowed.is_empty()
    }

    /// The first of `grants` outside the server's allow-list, if one is.
    pub fn first_outside<'a>(&self, grants: &'a [HostGrant]) -> Option<&'a HostGrant> {
        grants
            .iter()
            .find(|grant| !self.allowed.iter().any(|entry| grant.within(entry)))
    }

    /// Whether a trigger granted `grants`, named `trigger` in messages, may send requests
    /// to `scheme://host:port`.
    ///
    /// # Errors
    ///
    /// Why not, naming the destination and what it lacks.
    pub fn permit(
        &self,
        (trigger, grants): (&str, &[HostGrant]),
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<Permit, String> {
        let shown = printable(host);
        let destination = format!("{scheme}://{shown}:{port}");
        let Some(parsed) = Scheme::parse(scheme) else {
            return Err(format!(
                "{destination}: only http and https requests can be sent"
            ));
        };
        let Some(host) = request_host(host) else {
            return Err(format!(
                "{destination}: `{shown}` is not a host name or an IP address"
            ));
        };
        if !grants.iter().any(|g| g.allows(parsed, &host, port)) {
            return Err(format!(
                "{destination} is not granted to trigger '{trigger}': grant it with \
                 --allow-host {shown}:{port} (within the server's --egress-allow)"
            ));
        }
        let within = |g: &HostGrant| g.allows(parsed, &host, port);
        if !self.allowed.iter().any(within) {
            return Err(format!(
                "{destination} is granted to trigger '{trigger}' but no longer within the \
                 server's egress allow-list (--egress-allow)"
            ));
        }
        let named = self.allowed.iter().any(|g| within(g) && g.names(&host));
        Ok(Permit {
            scheme: parsed,
            host,
            port,
            named,
        })
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, OutboundFailure> {
        self.tls
            .get_or_init(|| tls_config(&self.extra_roots))
            .clone()
            .map_err(|e| OutboundFailure::new(OutboundFailureKind::Failed, e))
    }

    /// Sends `request` of a plugin of `database` to the destination of `permit` and
    /// reads its response whole. Returns the response, or the failure, and the response
    /// bytes received.
    pub async fn send(
        &self,
        request: OutboundRequest,
        permit: &Permit,
        database: DbId,
    ) -> (Result<OutboundResponse, OutboundFailure>, u64) {
        let destination = match permit.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("{}://[{v6}]:{}", permit.scheme.as_str(), permit.port),
            _ => format!(
                "{}://{}:{}",
                permit.scheme.as_str(),
                permit.host,
                permit.port
            ),
        };
        let failed =
            |kind, what: String| OutboundFailure::new(kind, format!("{destination}: {what}"));
        let prepared = self.tls().and_then(|tls| {
            let url = url_of(&destination, &request.target, permit)
                .map_err(|what| failed(OutboundFailureKind::Failed, what))?;
            let headers = headers_of(&request.headers)
                .map_err(|what| failed(OutboundFailureKind::Failed, what))?;
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .ok()
                // A tunnel or a trace is not a request to the destination.
                .filter(|m| *m != reqwest::Method::CONNECT && *m != reqwest::Method::TRACE)
                .ok_or_else(|| {
                    failed(
                        OutboundFailureKind::Failed,
                        format!("method `{}` cannot be sent", printable(&request.method)),
                    )
                })?;
            Ok((tls, url, headers, method))
        });
        let (tls, url, headers, method) = match prepared {
            Ok(prepared) => prepared,
            Err(failure) => return (Err(failure), 0),
        };
        let head = method == reqwest::Method::HEAD;
        let mut received = 0;
        let exchange = async {
            let client = client_for(tls, permit, (&self.lookups, database))
                .await
                .map_err(|(kind, what)| failed(kind, what))?;
            let response = client
                .request(method, url)
                .headers(headers)
                .body(request.body)
                .send()
                .await
                .map_err(|e| failed(kind_of(&e), describe(e)))?;
            read_whole(response, head, request.max_response_bytes, &mut received)
                .await
                .map_err(|(kind, what)| failed(kind, what))
        };
        let result = match tokio::time::timeout(request.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(failed(
                OutboundFailureKind::TimedOut,
                format!(
                    "no whole response within {}",
                    humantime::format_duration(request.timeout)
                ),
            )),
        };
        (result, received)
    }
}

/// The TLS of outbound requests: the machine's root certificates and `extra_roots`,
/// HTTP/1.1 only.
fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    // A machine's store may hold a certificate rustls cannot use: the others still count.
    roots.add_parsable_certificates(native.certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    if roots.is_empty() {
        return Err(
            "no root certificate to verify HTTPS servers with: the machine has none \
             (--egress-ca-file adds some)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session is kept to be resumed: a server could tell two tenants' requests for
    // one client's by it.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A client for one request to `permit`'s destination: it connects only to the
/// addresses its name resolved to and the grant lets it reach, follows no redirect,
/// uses no proxy, and keeps no connection for another request (so none is shared
/// between tenants, and none holds a descriptor past its request).
async fn client_for(
    tls: Arc<rustls::ClientConfig>,
    permit: &Permit,
    (lookups, database): (&Arc<Lookups>, DbId),
) -> Result<reqwest::Client, (OutboundFailureKind, String)> {
    let mut builder = reqwest::Client::builder()
        // reqwest takes the config itself, not an `Arc` of it.
        .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if permit.host.parse::<IpAddr>().is_err() {
        let addresses = resolve(permit, lookups, database).await?;
        builder = builder.resolve_to_addrs(&permit.host, &addresses);
    }
    builder.build().map_err(|e| {
        (
            OutboundFailureKind::Failed,
            format!("the outbound HTTP client cannot start: {e}"),
        )
    })
}

/// The addresses `permit`'s host name resolves to (looked up for `database`) that
/// requests to it may reach: if the server's list names it, any but link-local ones
/// (where clouds keep their metadata services, never a service of the operator's), else
/// public ones only.
async fn resolve(
    permit: &Permit,
    lookups: &Arc<Lookups>,
    database: DbId,
) -> Result<Vec<SocketAddr>, (OutboundFailureKind, String)> {
    let found = lookups
        .resolve(database, &permit.host, permit.port)
        .await
        .map_err(|e| (OutboundFailureKind::Failed, e))?;
    let reachable: Vec<SocketAddr> = found
        .into_iter()
        .filter(|address| {
            if permit.named {
                !is_link_local(address.ip())
            } else {
                !is_internal(address.ip())
            }
        })
        .collect();
    if reachable.is_empty() {
        let which = if permit.named {
            "link-local addresses, which no grant reaches"
        } else {
            "internal addresses, which only a host the server's --egress-allow names itself \
             may reach"
        };
        return Err((
            OutboundFailureKind::Refused,
            format!("`{}` resolves only to {which}", permit.host),
        ));
    }
    Ok(reachable)
}

/// The URL of `target` (the path and query of the request line) at `destination`.
///
/// # Errors
///
/// `target` is not a path and query: nothing in it may change where the request goes.
fn url_of(destination: &str, target: &str, permit: &Permit) -> Result<reqwest::Url, String> {
    if !target.starts_with('/') || target.contains('#') || target.chars().any(char::is_control) {
        return Err(format!(
            "the request target `{}` is not a path and query starting with `/`",
            printable(target)
        ));
    }
    let mut url =
        reqwest::Url::parse(destination).map_err(|e| format!("invalid destination: {e}"))?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    url.set_path(path);
    url.set_query(query);
    // What the URL names is what was permitted, and nothing else.
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    let same_host = match (
        host.map(str::parse::<IpAddr>),
        permit.host.parse::<IpAddr>(),
    ) {
        (Some(Ok(named)), Ok(permitted)) => named == permitted,
        _ => host == Some(permit.host.as_str()),
    };
    if !same_host
        || url.port_or_known_default() != Some(permit.port)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "the request target `{}` changes the destination",
            printable(target)
        ));
    }
    Ok(url)
}

/// The plugin's request headers, but those the host sets itself.
fn headers_of(headers: &[(String, String)]) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if CONNECTION_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let invalid_name = || format!("invalid header name `{}`", printable(name));
        let name =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid_name())?;
        // As the guest's library sent it: one character per byte (Latin-1).
        let value = value
            .chars()
            .map(|c| u8::try_from(c).ok())
            .collect::<Option<Vec<u8>>>()
            .and_then(|bytes| reqwest::header::HeaderValue::from_bytes(&bytes).ok())
            .ok_or_else(|| format!("invalid value of header `{name}`"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// `text` with its control characters escaped and cut to 200 characters: a plugin's
/// string, shown in a message.
fn printable(text: &str) -> String {
    let shown: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 200 {
        format!("{shown}…")
    } else {
        shown
    }
}

/// The status, headers and body of `response`, its body at most `max_bytes`; counts the
/// body bytes in `received` as they come.
async fn read_whole(
    mut response: reqwest::Response,
    head: bool,
    max_bytes: u64,
    received: &mut u64,
) -> Result<OutboundResponse, (OutboundFailureKind, String)> {
    let too_large = |size: String| {
        (
            OutboundFailureKind::TooLarge,
            format!(
                "the response body ({size}) is over the limit of {} (--max-http-response-bytes)",
                size_text(max_bytes)
            ),
        )
    };
    if !head
        && let Some(length) = response.content_length()
        && length > max_bytes
    {
        return Err(too_large(size_text(length)));
    }
    let status = response.status();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            *name != reqwest::header::TRANSFER_ENCODING
                && (head || *name != reqwest::header::CONTENT_LENGTH)
        })
        .map(|(name, value)| {
            // One character per byte (Latin-1), as HTTP/1.1 libraries read header bytes.
            let value = value.as_bytes().iter().copied().map(char::from).collect();
            (name.as_str().to_string(), value)
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| (kind_of(&e), describe(e)))?
    {
        *received += chunk.len() as u64;
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_large(format!("more than {}", size_text(max_bytes))));
        }
        body.extend_from_slice(&chunk);
    }
    if !head {
        headers.push(("content-length".to_string(), body.len().to_string()));
    }
    Ok(OutboundResponse {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

fn kind_of(error: &reqwest::Error) -> OutboundFailureKind {
    if error.is_timeout() {
        OutboundFailureKind::TimedOut
    } else {
        OutboundFailureKind::Failed
    }
}

/// `error` with its causes, which say what failed (the TLS verification, the
/// connection).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether `address` is not on the public internet: loopback, private, link-local
/// (cloud metadata services), shared, unspecified, multicast, reserved or for
/// documentation.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
        }
        IpAddr::V6(v6) => {
            let [first, second, third, ..] = v6.segments();
            // An IPv4 address written in IPv6 (mapped, `::ffff:a.b.c.d`, or compatible,
            // `::a.b.c.d`), or carried by 6to4 (`2002:aabb:ccdd::`): that address.
            if let Some(v4) = v6
                .to_ipv4()
                .filter(|_| !v6.is_loopback() && !v6.is_unspecified())
            {
                return is_internal(IpAddr::V4(v4));
            }
            if first == 0x2002 {
                let ([a, b], [c, d]) = (second.to_be_bytes(), third.to_be_bytes());
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local, link-local and site-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // Documentation, Teredo (which tunnels to any IPv4) and the NAT64
                // prefixes.
                || (first == 0x2001 && (second == 0x0db8 || second == 0))
                || (first == 0x0064 && second == 0xff9b)
        }
    }
}

/// Whether `address` is link-local, or unspecified: where a cloud's metadata service
/// answers, never an operator's own service.
fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_link_local(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_cannot_change_the_destination() {
        let permit = Permit {
            scheme: Scheme::Https,
            host: "hooks.slack.com".into(),
            port: 443,
            named: true,
        };
        let destination = "https://hooks.slack.com:443";
        let url = url_of(destination, "/services/x?a=1&b=%20", &permit).expect("a path");
        assert_eq!(url.as_str(), "https://hooks.slack.com/services/x?a=1&b=%20");
        let url = url_of(destination, "//evil.example/x", &permit).expect("a path");
        assert_eq!(url.host_str(), Some("hooks.slack.com"));
        for target in [
            "@169.254.169.254/latest/meta-data/",
            "0/",
            "http://evil.example/",
            "/x#@evil",
            "/x\r\nHost: evil",
            "",
        ] {
            let refused = url_of(destination, target, &permit).expect_err(target);
            assert!(refused.contains("request target"), "{target}: {refused}");
        }
    }

    #[test]
    fn internal_addresses_are_told_from_public_ones() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "fec0::1",
        ] {
            assert!(
                is_internal(internal.parse().expect("an address")),
                "{internal}"
            );
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "2002:101:101::1",
        ] {
            assert!(
                !is_internal(public.parse().expect("an address")),
                "{public}"
            );
        }
    }

    #[test]
    fn a_destination_needs_the_triggers_grant_and_the_servers_list() {
        let grant = |text: &str| text.parse::<HostGrant>().expect("a grant");
        let egress = Egress::new(
            vec![grant("localhost:8181"), grant("*.example.com:443")],
            b"",
        )
        .expect("egress");
        let granted = [
            grant("localhost:8181"),
            grant("https://api.example.com:443"),
        ];
        let permit = |scheme, host, port| egress.permit(("t", &granted), scheme, host, port);
        let named = permit("http", "localhost", 8181).expect("granted");
        assert_eq!((named.scheme, named.named), (Scheme::Http, true));
        let below = permit("https", "API.example.com", 443).expect("granted");
        assert_eq!(
            (below.host.as_str(), below.named),
            ("api.example.com", false)
        );
        let smuggled = permit("https", "169.254.169.254#.example.com", 443).expect_err("refused");
        assert!(
            smuggled.contains("is not a host name or an IP address"),
            "{smuggled}"
        );
        let refused = permit("http", "127.0.0.1", 8181).expect_err("refused");
        assert!(
            refused.contains("http://127.0.0.1:8181 is not granted to trigger 't'"),
            "{refused}"
        );
        assert!(
            permit("http", "api.example.com", 443).is_err(),
            "https only"
        );
        assert!(
            permit("ftp", "localhost", 8181)
                .expect_err("refused")
                .contains("only http and https")
        );
        // A grant the server's list no longer holds (narrowed at a restart).
        let narrowed = Egress::new(vec![grant("localhost:8181")], b"").expect("egress");
        let outside = narrowed
            .permit(("t", &granted), "https", "api.example.com", 443)
            .expect_err("refused");
        assert!(outside.contains("no longer within"), "{outside}");
        assert_eq!(narrowed.first_outside(&granted), Some(&granted[1]));
        assert_eq!(egress.first_outside(&granted), None);
    }
}
