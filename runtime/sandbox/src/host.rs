//! The state each plugin's store carries, and what of it belongs to the current call.

use crate::files::OpenFiles;
use crate::output::CapturedOutput;
use crate::scratch::Scratch;
use crate::store_limits::MemoryLimiter;
use sluice_plugin_api::{
    CpuClock, HostServices, LimitKind, Limits, OutboundFailure, OutboundFailureKind,
    OutboundRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Everything a plugin's store holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) files: OpenFiles,
    /// Its `/tmp`, and what the call has written there.
    pub(crate) scratch: Scratch,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) call: CallState,
}

/// The part of the state that belongs to the current call.
pub(crate) struct CallState {
    pub(crate) services: Option<Arc<dyn HostServices>>,
    pub(crate) limits: Limits,
    pub(crate) log_lines: u64,
    pub(crate) log_bytes: u64,
    pub(crate) bytes_written: u64,
    /// Bytes written in `/tmp`, counted as [`crate::scratch`] counts them; known once
    /// the call has ended.
    pub(crate) tmp_bytes: u64,
    /// Outbound HTTP requests sent.
    pub(crate) http_requests: u64,
    /// The limit that stopped the call, if one did.
    pub(crate) hit: Option<LimitKind>,
    /// Why the host refused a call that ends the plugin's call (a batched write to a
    /// database the trigger may not use), if it did.
    pub(crate) refused: Option<String>,
    /// When the call's wall time runs out.
    pub(crate) deadline: Instant,
    /// The CPU time the call's turns have taken, against [`Limits::cpu_time`].
    pub(crate) cpu: Arc<CpuClock>,
    /// The message of the call to run, until the guest takes it.
    pub(crate) message: Option<Vec<u8>>,
    /// The message of the call's outcome, once the guest hands it over.
    pub(crate) outcome: Option<Vec<u8>>,
}

impl CallState {
    pub(crate) fn new(limits: Limits) -> Self {
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

    pub(crate) fn services(&self) -> wasmtime::Result<&Arc<dyn HostServices>> {
        self.services
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("host call outside of a plugin call"))
    }

    /// Counts one log line of `text`; traps once a limit is passed. Returns the text
    /// to keep: cut at [`Limits::MAX_LOG_LINE_BYTES`], saying so.
    pub(crate) fn count_log_line(&mut self, text: &str) -> wasmtime::Result<String> {
        self.log_lines += 1;
        if self.log_lines > self.limits.log_lines {
            self.hit = Some(LimitKind::LogLines);
            wasmtime::bail!("{}", self.limits.describe(LimitKind::LogLines));
        }
        let kept = cut_line(text);
        self.log_bytes = self.log_bytes.saturating_add(kept.len() as u64);
        if self.log_bytes > self.limits.log_bytes {
            self.hit = Some(LimitKind::LogBytes);
            wasmtime::bail!("{}", self.limits.describe(LimitKind::LogBytes));
        }
        Ok(kept)
    }

    pub(crate) fn count_written(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.bytes_written += bytes as u64;
        if self.bytes_written > self.limits.bytes_written {
            self.hit = Some(LimitKind::BytesWritten);
            wasmtime::bail!("{}", self.limits.describe(LimitKind::BytesWritten));
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
pub(crate) fn cut_line(text: &str) -> String {
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

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
