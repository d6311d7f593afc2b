//! What the host keeps of the call a plugin is running: its limits, what it has used of
//! them, and the messages of the call and of its outcome.

use crate::Stop;
use sluice_plugin_api::{
    CpuClock, HostServices, LimitKind, Limits, OutboundFailure, OutboundFailureKind,
    OutboundRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the host keeps of the call a plugin is running.
pub struct CallState {
    /// What serves the plugin's host calls; `None` between calls.
    pub services: Option<Arc<dyn HostServices>>,
    /// The call's limits.
    pub limits: Limits,
    /// Log lines the plugin made.
    pub log_lines: u64,
    /// Bytes of those lines.
    pub log_bytes: u64,
    /// Line-protocol bytes the plugin wrote or queued.
    pub bytes_written: u64,
    /// Bytes written in `/tmp`, counted as the sandbox counts them; known once
    /// the call has ended.
    pub tmp_bytes: u64,
    /// Outbound HTTP requests sent.
    pub http_requests: u64,
    /// The limit that stopped the call, if one did.
    pub hit: Option<LimitKind>,
    /// Why the host refused a call that ends the plugin's call (a batched write to a
    /// database the trigger may not use), if it did.
    pub refused: Option<String>,
    /// When the call's wall time runs out.
    pub deadline: Instant,
    /// The CPU time the call's turns have taken, against [`Limits::cpu_time`].
    pub cpu: Arc<CpuClock>,
    /// The message of the call to run, until the guest takes it.
    pub message: Option<Vec<u8>>,
    /// The message of the call's outcome, once the guest hands it over.
    pub outcome: Option<Vec<u8>>,
}

impl CallState {
    /// A call within `limits`, its wall time counted from now.
    pub fn new(limits: Limits) -> Self {
        let deadline = Instant::now() + limits.wall_time;
        Self {
            services: None,
            limits,
            log_lines: 0,
            log_bytes: 0,
            bytes_written: 0,
            tmp_bytes: 0,
            http_requests: 0,
            hit: None,
            refused: None,
            deadline,
            cpu: Arc::new(CpuClock::new()),
            message: None,
            outcome: None,
        }
    }

    /// The services of the call.
    ///
    /// # Errors
    ///
    /// No call is running.
    pub fn services(&self) -> Result<&Arc<dyn HostServices>, Stop> {
        self.services
            .as_ref()
            .ok_or_else(|| Stop::new("host call outside of a plugin call"))
    }

    /// Counts one log line of `text`. Returns the text to keep: cut at
    /// [`Limits::MAX_LOG_LINE_BYTES`], saying so.
    ///
    /// # Errors
    ///
    /// The call has logged more lines or bytes than its limits.
    pub fn count_log_line(&mut self, text: &str) -> Result<String, Stop> {
        self.log_lines += 1;
        if self.log_lines > self.limits.log_lines {
            self.hit = Some(LimitKind::LogLines);
            return Err(Stop::new(self.limits.describe(LimitKind::LogLines)));
        }
        let kept = cut_line(text);
        self.log_bytes = self.log_bytes.saturating_add(kept.len() as u64);
        if self.log_bytes > self.limits.log_bytes {
            self.hit = Some(LimitKind::LogBytes);
            return Err(Stop::new(self.limits.describe(LimitKind::LogBytes)));
        }
        Ok(kept)
    }

    /// Counts `bytes` of line protocol written; stops the call past its limit.
    ///
    /// # Errors
    ///
    /// The call has written more than its limit.
    pub fn count_written(&mut self, bytes: usize) -> Result<(), Stop> {
        self.bytes_written += bytes as u64;
        if self.bytes_written > self.limits.bytes_written {
            self.hit = Some(LimitKind::BytesWritten);
            return Err(Stop::new(self.limits.describe(LimitKind::BytesWritten)));
        }
        Ok(())
    }

    /// The guest's request as the host sends it, within the call's limits: counted
    /// against its requests, given the time left of its own time-out, the trigger's and
    /// the call's wall time.
    pub(crate) fn outbound(
        &mut self,
        request: Outgoing,
    ) -> Result<OutboundRequest, OutboundFailure> {
        let destination = format!("{}://{}:{}", request.scheme, request.host, request.port);
        if self.http_requests >= self.limits.http_requests {
            return Err(OutboundFailure::new(
                OutboundFailureKind::TooMany,
                format!(
                    "request to {destination} not sent: the limit of {} HTTP requests per \
                     invocation is reached",
                    self.limits.http_requests
                ),
            ));
        }
        if request.body.len() as u64 > self.limits.http_request_bytes {
            return Err(OutboundFailure::new(
                OutboundFailureKind::TooLarge,
                format!(
                    "request to {destination} not sent: its body ({}) is over the limit of {} \
                     (--max-http-request-bytes)",
                    sluice_plugin_api::size_text(request.body.len() as u64),
                    sluice_plugin_api::size_text(self.limits.http_request_bytes)
                ),
            ));
        }
        let asked = request
            .timeout_seconds
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok());
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = asked
            .unwrap_or(Duration::MAX)
            .min(self.limits.http_timeout)
            .min(left);
        if timeout.is_zero() {
            return Err(OutboundFailure::new(
                OutboundFailureKind::TimedOut,
                format!("request to {destination} not sent: no time is left for it"),
            ));
        }
        // Counted as the host counts it: it is handed over, whatever becomes of it.
        self.http_requests += 1;
        Ok(OutboundRequest {
            scheme: request.scheme,
            host: request.host,
            port: request.port,
            method: request.method,
            target: request.target,
            headers: request.headers,
            body: request.body,
            timeout,
            max_response_bytes: self.limits.http_response_bytes,
        })
    }
}

/// An outbound request as the guest asked for it, before the call's limits apply.
pub(crate) struct Outgoing {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_seconds: Option<f64>,
}

/// `text`, or its first [`Limits::MAX_LOG_LINE_BYTES`] (at a character boundary) and a
/// note of how much was cut: a log line, or a plugin's error, which the host keeps.
pub fn cut_line(text: &str) -> String {
    let max = Limits::MAX_LOG_LINE_BYTES;
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes cut: a log line holds at most {}]",
        &text[..end],
        text.len() - end,
        sluice_plugin_api::size_text(max as u64)
    )
}
