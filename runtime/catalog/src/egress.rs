//! Egress grants: the destinations a trigger's plugin may send HTTP requests to
//! (`--allow-host`), and the server's allow-list they must fall within (`--egress-allow`).
//!
//! A grant is `[scheme://]host:port`. The host is a name (`hooks.slack.com`,
//! `localhost`), an IP address (`127.0.0.1`, `[::1]`) or, in the server's list and in
//! the grants that list allows, every name below a domain (`*.example.com`). Without a
//! scheme a grant allows both `http` and `https`. The port is always given: a grant
//! names one service, not a machine.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One destination, or a family of them, that requests may go to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostGrant {
    /// `http` or `https`; `None`: either.
    scheme: Option<Scheme>,
    host: HostPattern,
    port: u16,
}

/// The scheme of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS, which the host does.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The scheme named `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            _ => None,
        }
    }
}

/// Which hosts a grant names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    /// One name, in lower case.
    Name(String),
    /// One address.
    Address(IpAddr),
    /// Every name below this domain (in lower case), not the domain itself.
    Below(String),
}

/// Why a grant is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host grant `{grant}`: {reason}")]
pub struct GrantError {
    grant: String,
    reason: String,
}

/// The longest grant, in bytes.
const MAX_GRANT_BYTES: usize = 300;

impl FromStr for HostGrant {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, GrantError> {
        let invalid = |reason: &str| GrantError {
            grant: text.chars().take(MAX_GRANT_BYTES).collect(),
            reason: reason.to_string(),
        };
        if text.len() > MAX_GRANT_BYTES {
            return Err(invalid("too long"));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (
                Some(Scheme::parse(scheme).ok_or_else(|| invalid("the scheme is http or https"))?),
                rest,
            ),
            None => (None, text),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("a port is required, as in `hooks.slack.com:443`"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port is a number from 1 to 65535"))?;
        let host = HostPattern::parse(host).map_err(|reason| invalid(&reason))?;
        Ok(Self { scheme, host, port })
    }
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        if let Some(v6) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return v6
                .parse()
                .map(Self::Address)
                .map_err(|_| format!("`{text}` is not an IPv6 address"));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Self::Address(address));
        }
        if let Some(domain) = text.strip_prefix("*.") {
            let domain = valid_name(domain)?;
            return Ok(Self::Below(domain));
        }
        if text.contains('*') {
            return Err(
                "a wildcard stands only for the names below a domain: `*.example.com`".into(),
            );
        }
        valid_name(text).map(Self::Name)
    }

    /// Whether the host a request names, `host` (lower case), is this.
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Name(name) => host == name,
            Self::Address(address) => host_address(host) == Some(*address),
            Self::Below(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
        }
    }

    /// Whether every host this names, `other` names too.
    fn within(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Below(mine), Self::Below(theirs)) => mine == theirs || other.matches(mine),
            (Self::Below(_), _) => false,
            (Self::Name(name), _) => other.matches(name),
            (Self::Address(mine), Self::Address(theirs)) => mine == theirs,
            (Self::Address(_), _) => false,
        }
    }
}

/// `host` of a request as an address, if it is one (an IPv6 one with or without its
/// brackets).
fn host_address(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// `name` in lower case, if it is a DNS name: dot-separated labels of letters, digits
/// and hyphens, none empty or longer than 63 bytes, at most 253 bytes in all, the last
/// starting with a letter (URL parsers read a name ending in a number, `2130706433` or
/// `0x7f.1`, as an IPv4 address).
fn valid_name(name: &str) -> Result<String, String> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_is_word = name.rsplit('.').next().is_some_and(|label| {
        label.starts_with(|c: char| c.is_ascii_alphabetic()) && !label.starts_with("0x")
    });
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) || !last_is_word {
        return Err(format!(
            "`{name}` is not a host name or an IP address (IPv6 in brackets)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// The host a request names, in lower case, if it is a host name or an IP address (an
/// IPv6 one with or without brackets), and nothing else: no port, path, user or other
/// URL syntax can ride along with it.
pub fn request_host(host: &str) -> Option<String> {
    if let Some(address) = host_address(host) {
        return Some(address.to_string());
    }
    valid_name(host).ok()
}

impl HostGrant {
    /// Whether a request to `scheme://host:port` falls within this grant.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.port == port
            && self.scheme.is_none_or(|s| s == scheme)
            && self.host.matches(&host.to_ascii_lowercase())
    }

    /// Whether every request this grant allows, `other` allows too.
    pub fn within(&self, other: &HostGrant) -> bool {
        self.port == other.port
            && (other.scheme.is_none() || other.scheme == self.scheme)
            && self.host.within(&other.host)
    }

    /// Whether the grant names `host` itself (a name or an address), not through a
    /// wildcard: a name the admin named may resolve to any address, one a wildcard
    /// allows only to public ones.
    pub fn names(&self, host: &str) -> bool {
        matches!(self.host, HostPattern::Name(_) | HostPattern::Address(_))
            && self.host.matches(&host.to_ascii_lowercase())
    }
}

impl fmt::Display for HostGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{}://", scheme.as_str())?;
        }
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Address(IpAddr::V6(v6)) => write!(f, "[{v6}]")?,
            HostPattern::Address(v4) => write!(f, "{v4}")?,
            HostPattern::Below(domain) => write!(f, "*.{domain}")?,
        }
        write!(f, ":{}", self.port)
    }
}

impl Serialize for HostGrant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostGrant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> HostGrant {
        text.parse().expect(text)
    }

    #[test]
    fn grants_parse_and_print_back() {
        for text in [
            "hooks.slack.com:443",
            "https://hooks.slack.com:443",
            "http://localhost:8181",
            "127.0.0.1:8181",
            "[::1]:8181",
            "*.example.com:443",
        ] {
            assert_eq!(grant(text).to_string(), text);
        }
        assert_eq!(
            grant("Hooks.Slack.COM:443").to_string(),
            "hooks.slack.com:443"
        );
    }

    #[test]
    fn a_malformed_grant_says_what_is_wrong() {
        for (text, wanted) in [
            ("hooks.slack.com", "a port is required"),
            ("hooks.slack.com:0", "from 1 to 65535"),
            ("hooks.slack.com:http", "from 1 to 65535"),
            ("ftp://example.com:21", "http or https"),
            ("*:443", "wildcard"),
            ("*.*.com:443", "not a host name"),
            ("exa mple.com:80", "not a host name"),
            ("[zz]:80", "not an IPv6 address"),
            (":80", "not a host name"),
        ] {
            let error = text.parse::<HostGrant>().expect_err(text).to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn a_grant_allows_its_own_destination_only() {
        let slack = grant("https://hooks.slack.com:443");
        assert!(slack.allows(Scheme::Https, "hooks.slack.com", 443));
        assert!(slack.allows(Scheme::Https, "HOOKS.slack.com", 443));
        assert!(!slack.allows(Scheme::Http, "hooks.slack.com", 443));
        assert!(!slack.allows(Scheme::Https, "hooks.slack.com", 8443));
        assert!(!slack.allows(Scheme::Https, "evil.hooks.slack.com", 443));
        let local = grant("localhost:8181");
        assert!(local.allows(Scheme::Http, "localhost", 8181));
        assert!(
            !local.allows(Scheme::Http, "127.0.0.1", 8181),
            "a name grants no address"
        );
        let v6 = grant("[::1]:80");
        assert!(v6.allows(Scheme::Http, "::1", 80) && v6.allows(Scheme::Http, "[::1]", 80));
        let below = grant("*.example.com:443");
        assert!(below.allows(Scheme::Https, "api.example.com", 443));
        assert!(below.allows(Scheme::Https, "a.b.example.com", 443));
        assert!(!below.allows(Scheme::Https, "example.com", 443));
        assert!(!below.allows(Scheme::Https, "badexample.com", 443));
        assert!(!below.allows(Scheme::Https, ".example.com", 443));
    }

    #[test]
    fn a_grant_is_within_a_list_entry_that_allows_all_it_allows() {
        let server = grant("*.example.com:443");
        assert!(grant("api.example.com:443").within(&server));
        assert!(grant("https://api.example.com:443").within(&server));
        assert!(grant("*.api.example.com:443").within(&server));
        assert!(grant("*.example.com:443").within(&server));
        assert!(!grant("example.com:443").within(&server));
        assert!(!grant("api.example.com:80").within(&server));
        assert!(!grant("*.com:443").within(&server));
        let https_only = grant("https://api.example.com:443");
        assert!(
            !grant("api.example.com:443").within(&https_only),
            "http too"
        );
        assert!(!grant("*.example.com:443").within(&grant("api.example.com:443")));
        assert!(grant("127.0.0.1:80").within(&grant("127.0.0.1:80")));
        assert!(!grant("127.0.0.1:80").within(&grant("localhost:80")));
    }

    #[test]
    fn only_a_named_host_is_named() {
        assert!(grant("localhost:80").names("localhost"));
        assert!(!grant("*.example.com:80").names("api.example.com"));
    }

    #[test]
    fn a_request_host_is_a_name_or_an_address_and_nothing_more() {
        assert_eq!(
            request_host("API.example.com").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(request_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(request_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        for smuggled in [
            "169.254.169.254#.example.com",
            "169.254.169.254/.example.com",
            "169.254.169.254?.example.com",
            "user@example.com",
            "example.com:80",
            "2130706433",
            "a.0x7f",
            "example.com.",
            "",
        ] {
            assert_eq!(request_host(smuggled), None, "{smuggled}");
        }
        assert!("x.2130706433:80".parse::<HostGrant>().is_err());
    }
}
