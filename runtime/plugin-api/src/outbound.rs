//! Outbound HTTP: a request a plugin sends through the host, and what comes back.
//!
//! The executor turns the guest's request into an [`OutboundRequest`] within the
//! invocation's limits; [`HostServices::http_send`] checks the trigger's grants, sends it
//! and reads the response whole.
//!
//! [`HostServices::http_send`]: crate::HostServices::http_send

use std::time::Duration;

/// A request to `scheme://host:port` with its bounds already settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// `http` or `https`.
    pub scheme: String,
    /// A name or an IP address, as the plugin's URL gave it.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The method, as the plugin gave it.
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The plugin's headers, those describing the connection included (the host drops
    /// them).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// How long the whole exchange may take, connecting included.
    pub timeout: Duration,
    /// The largest response body that may be received.
    pub max_response_bytes: u64,
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: String,
    /// The response's headers, without `transfer-encoding`, with `content-length`
    /// giving the length of `body` (but for a response to `HEAD`).
    pub headers: Vec<(String, String)>,
    /// The body, still in its `content-encoding`.
    pub body: Vec<u8>,
}

/// Why an outbound request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundFailureKind {
    /// The destination, or the address its name resolved to, is not granted: nothing
    /// was sent.
    Refused,
    /// The request's time-out passed.
    TimedOut,
    /// The response was over [`OutboundRequest::max_response_bytes`].
    TooLarge,
    /// The invocation has sent as many requests as it may.
    TooMany,
    /// Connecting, TLS or the exchange failed.
    Failed,
}

/// A failed outbound request: its kind, and a message for the plugin that names the
/// destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutboundFailure {
    /// What kind of failure.
    pub kind: OutboundFailureKind,
    /// What happened.
    pub message: String,
}

impl OutboundFailure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: OutboundFailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What a host without outbound HTTP answers: a test run, a dry run.
pub const NO_EGRESS: &str = "outbound HTTP is not available here: only a trigger's \
    invocations may send requests, to the destinations it is granted (--allow-host)";
