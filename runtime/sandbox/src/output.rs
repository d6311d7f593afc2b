//! stdout and stderr of a plugin, captured up to a bound.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A buffer the guest's stdout or stderr writes into. Bytes beyond the capacity are
/// dropped (and counted), never an error the plugin sees.
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<Buffer>>,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: usize,
}

impl CapturedOutput {
    /// Empties the buffer and sets the capacity for the next call.
    pub(crate) fn reset(&self, capacity: usize) {
        let mut buffer = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.bytes.clear();
        buffer.capacity = capacity;
        buffer.dropped = 0;
    }

    /// Appends what fits and counts the rest as dropped.
    fn append(&self, data: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let kept = room.min(data.len());
        buffer.bytes.extend_from_slice(&data[..kept]);
        buffer.dropped += data.len() - kept;
    }

    /// Takes what was captured: complete lines (a final partial line included) and the
    /// number of bytes dropped beyond the capacity.
    pub(crate) fn take_lines(&self) -> (Vec<String>, usize) {
        let mut buffer = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&buffer.bytes).into_owned();
        buffer.bytes.clear();
        let dropped = std::mem::take(&mut buffer.dropped);
        (text.lines().map(str::to_owned).collect(), dropped)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Writes straight into the buffer: the default adapter hands every write to a
    /// background task, which made a print-heavy plugin spend most of its time waiting.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
