//! What a plugin says while it runs: `log` calls and stdout/stderr, kept
//! with the run up to a budget. Beyond the budget lines are counted, not
//! kept, and the count is reported: a chatty plugin never fills a disk and
//! never traps for writing too much.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

/// The longest single line kept; longer lines are cut.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the invocation started.
    pub at_ms: u32,
    pub level: Level,
    /// `log`, `stdout` or `stderr`.
    pub source: String,
    pub message: String,
}

pub(crate) struct LogBuffer {
    started: Instant,
    lines: Vec<LogLine>,
    bytes: usize,
    dropped: u64,
    max_bytes: usize,
    max_lines: usize,
}

pub(crate) type SharedLogs = Arc<Mutex<LogBuffer>>;

impl LogBuffer {
    pub fn shared(max_bytes: usize, max_lines: usize) -> SharedLogs {
        Arc::new(Mutex::new(LogBuffer {
            started: Instant::now(),
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            max_bytes,
            max_lines,
        }))
    }

    pub fn push(&mut self, level: Level, source: &str, message: &str) {
        let mut message = message.trim_end();
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message = &message[..cut];
        }
        if self.lines.len() >= self.max_lines || self.bytes + message.len() > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            at_ms: self.started.elapsed().as_millis().min(u32::MAX as u128) as u32,
            level,
            source: source.to_string(),
            message: message.to_string(),
        });
    }

    pub fn take(&mut self) -> (Vec<LogLine>, u64) {
        (std::mem::take(&mut self.lines), self.dropped)
    }

    /// Everything the plugin wrote to stderr, for panic messages.
    pub fn stderr(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().filter(|l| l.source == "stderr").map(|l| l.message.as_str()).collect();
        lines.join("\n")
    }
}

/// stdout or stderr of a plugin: complete lines go to the log buffer.
#[derive(Clone)]
pub(crate) struct LogPipe {
    logs: SharedLogs,
    source: &'static str,
    level: Level,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogPipe {
    pub fn new(logs: &SharedLogs, source: &'static str, level: Level) -> Self {
        Self { logs: logs.clone(), source, level, partial: Arc::default() }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the unfinished line too: a plugin printing without newlines
        // must not grow host memory.
        let room = (MAX_LINE * 2).saturating_sub(partial.len());
        partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            logs.push(self.level, self.source, &String::from_utf8_lossy(&line));
        }
        if partial.len() >= MAX_LINE {
            logs.push(self.level, self.source, &String::from_utf8_lossy(&partial));
            partial.clear();
        }
    }

    pub fn flush_partial(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        if !partial.is_empty() {
            let text = String::from_utf8_lossy(&partial).into_owned();
            partial.clear();
            self.logs.lock().unwrap_or_else(|p| p.into_inner()).push(self.level, self.source, &text);
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_what_it_drops() {
        let logs = LogBuffer::shared(10, 100);
        let mut b = logs.lock().unwrap();
        b.push(Level::Info, "log", "12345");
        b.push(Level::Info, "log", "123456");
        b.push(Level::Info, "log", "1234");
        let (lines, dropped) = b.take();
        assert_eq!(lines.len(), 2);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn pipe_splits_lines_and_bounds_partial_ones() {
        let logs = LogBuffer::shared(1 << 20, 1000);
        let pipe = LogPipe::new(&logs, "stdout", Level::Info);
        pipe.write_bytes(b"one\ntw");
        pipe.write_bytes(b"o\nthree");
        pipe.flush_partial();
        pipe.write_bytes(&vec![b'x'; 100_000]);
        let (lines, _) = logs.lock().unwrap().take();
        let texts: Vec<_> = lines.iter().map(|l| l.message.len()).collect();
        assert_eq!(lines[0].message, "one");
        assert_eq!(lines[1].message, "two");
        assert_eq!(lines[2].message, "three");
        assert_eq!(texts[3], MAX_LINE);
    }
}
