//! Outbound HTTP for plugins: the host sends what a trigger is granted, and nothing else.
//!
//! A request goes out only when the trigger's grants (`--allow-host`) and the server's
//! allow-list (`--egress-allow`) both allow its scheme, host and port. The host makes
//! the connection and does TLS, verifying the certificate against the machine's roots
//! (and those the operator adds); the plugin never sees a socket. Each request is
//! bounded: a time-out within the invocation's wall time, a response size, a number per
//! invocation (counted by the executor).
//!
//! Names are resolved by the host, and a request never reaches an address its grant does
//! not name: a name that the server's list names itself (`hooks.slack.com:443`,
//! `localhost:8181`) may resolve to any address, as the operator chose it, but one
//! allowed only through a wildcard (`*.example.com:443`) must resolve to public
//! addresses, so that whoever controls the domain's DNS cannot point a plugin at the
//! loopback, the private network or a cloud's metadata service. Redirects are not
//! followed by the host: the plugin's library follows them, each hop checked again.

use sluice_catalog::{HostGrant, Scheme};
use sluice_plugin_api::{
    OutboundFailure, OutboundFailureKind, OutboundRequest, OutboundResponse, size_text,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The server's side of outbound HTTP: its allow-list and the client that sends.
pub struct Egress {
    /// The destinations any trigger may be granted.
    allowed: Arc<Vec<HostGrant>>,
    /// Root certificates trusted besides the machine's, in PEM.
    extra_roots: Vec<reqwest::Certificate>,
    /// Made on first use: loading the machine's roots takes a while.
    client: OnceLock<Result<reqwest::Client, String>>,
}

/// Longest the host waits for a connection to be made, within a request's time-out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections kept open per destination after a request, for the next one.
const IDLE_CONNECTIONS_PER_HOST: usize = 4;

/// How long such a connection is kept.
const IDLE_CONNECTION_TIME: Duration = Duration::from_secs(30);

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
        let extra_roots = if extra_roots.is_empty() {
            Vec::new()
        } else {
            let roots = reqwest::Certificate::from_pem_bundle(extra_roots)
                .map_err(|e| format!("the egress root certificates do not parse: {e}"))?;
            if roots.is_empty() {
                return Err("the egress root certificates file holds no certificate".into());
            }
            roots
        };
        Ok(Self {
            allowed: Arc::new(allowed),
            extra_roots,
            client: OnceLock::new(),
        })
    }

    /// No egress at all: every request refused.
    pub fn none() -> Self {
        Self {
            allowed: Arc::new(Vec::new()),
            extra_roots: Vec::new(),
            client: OnceLock::new(),
        }
    }

    /// The server's allow-list.
    pub fn allowed(&self) -> &[HostGrant] {
        &self.allowed
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
    ) -> Result<Scheme, String> {
        let destination = format!("{scheme}://{host}:{port}");
        let Some(parsed) = Scheme::parse(scheme) else {
            return Err(format!(
                "{destination}: only http and https requests can be sent"
            ));
        };
        if !grants.iter().any(|g| g.allows(parsed, host, port)) {
            return Err(format!(
                "{destination} is not granted to trigger '{trigger}': grant it with \
                 --allow-host {host}:{port} (within the server's --egress-allow)"
            ));
        }
        if !self.allowed.iter().any(|g| g.allows(parsed, host, port)) {
            return Err(format!(
                "{destination} is granted to trigger '{trigger}' but no longer within the \
                 server's egress allow-list (--egress-allow)"
            ));
        }
        Ok(parsed)
    }

    fn client(&self) -> Result<&reqwest::Client, OutboundFailure> {
        self.client
            .get_or_init(|| {
                let resolver = GrantedResolver {
                    allowed: Arc::clone(&self.allowed),
                };
                let mut builder = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .connect_timeout(CONNECT_TIMEOUT)
                    // Connections kept for the next request are few and short-lived:
                    // each holds a descriptor for no one in particular.
                    .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
                    .pool_idle_timeout(IDLE_CONNECTION_TIME)
                    .dns_resolver(Arc::new(resolver))
                    .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
                for root in &self.extra_roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                builder
                    .build()
                    .map_err(|e| format!("the outbound HTTP client cannot start: {e}"))
            })
            .as_ref()
            .map_err(|e| OutboundFailure::new(OutboundFailureKind::Failed, e.clone()))
    }

    /// Sends `request`, which the trigger was permitted, and reads its response whole.
    pub async fn send(
        &self,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundFailure> {
        let client = self.client()?;
        let host = if request.host.contains(':') && !request.host.starts_with('[') {
            format!("[{}]", request.host)
        } else {
            request.host.clone()
        };
        let destination = format!("{}://{host}:{}", request.scheme, request.port);
        let failed =
            |kind, what: String| OutboundFailure::new(kind, format!("{destination}: {what}"));
        let url = format!("{destination}{}", request.target);
        let url = reqwest::Url::parse(&url).map_err(|e| {
            failed(
                OutboundFailureKind::Failed,
                format!("invalid URL `{url}`: {e}"),
            )
        })?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            failed(
                OutboundFailureKind::Failed,
                format!("invalid method `{}`", request.method),
            )
        })?;
        let head = method == reqwest::Method::HEAD;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &request.headers {
            if CONNECTION_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                failed(
                    OutboundFailureKind::Failed,
                    format!("invalid header name `{name}`"),
                )
            })?;
            // As the guest's library sent it: one character per byte (Latin-1).
            let value = value
                .chars()
                .map(|c| u8::try_from(c).ok())
                .collect::<Option<Vec<u8>>>()
                .and_then(|bytes| reqwest::header::HeaderValue::from_bytes(&bytes).ok())
                .ok_or(())
                .map_err(|_| {
                    failed(
                        OutboundFailureKind::Failed,
                        format!("invalid value of header `{name}`"),
                    )
                })?;
            headers.append(name, value);
        }
        let exchange = async {
            let response = client
                .request(method, url)
                .headers(headers)
                .body(request.body)
                .send()
                .await
                .map_err(|e| failed(kind_of(&e), describe(e)))?;
            read_whole(response, head, request.max_response_bytes)
                .await
                .map_err(|(kind, what)| failed(kind, what))
        };
        match tokio::time::timeout(request.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(failed(
                OutboundFailureKind::TimedOut,
                format!(
                    "no whole response within {}",
                    humantime::format_duration(request.timeout)
                ),
            )),
        }
    }
}

/// The status, headers and body of `response`, its body at most `max_bytes`.
async fn read_whole(
    mut response: reqwest::Response,
    head: bool,
    max_bytes: u64,
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
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| (kind_of(&e), describe(e)))?
    {
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
    } else if refused_by_resolver(error) {
        OutboundFailureKind::Refused
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

/// Whether `error` comes from [`GrantedResolver`] refusing the addresses a name
/// resolved to.
fn refused_by_resolver(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<InternalAddress>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A name allowed only through a wildcard resolved to internal addresses.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{name}` resolves to {addresses}, internal addresses that only a grant naming the \
     host itself in the server's --egress-allow may reach"
)]
struct InternalAddress {
    name: String,
    addresses: String,
}

/// Resolves names with the system's resolver and keeps only the addresses their grant
/// lets requests reach.
struct GrantedResolver {
    allowed: Arc<Vec<HostGrant>>,
}

impl reqwest::dns::Resolve for GrantedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        let named = self.allowed.iter().any(|grant| grant.names(&name));
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if named {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| !is_internal(address.ip()))
                .collect();
            if public.is_empty() && !found.is_empty() {
                let addresses = found
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(InternalAddress { name, addresses }) as _);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
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
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(is_internal(internal.parse().expect("an address")), "{internal}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_internal(public.parse().expect("an address")), "{public}");
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
        assert_eq!(permit("http", "localhost", 8181), Ok(Scheme::Http));
        assert_eq!(permit("https", "api.example.com", 443), Ok(Scheme::Https));
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
