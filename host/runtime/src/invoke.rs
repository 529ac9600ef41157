//! One invocation: a fresh `Store` with its limits, and the translation of
//! whatever went wrong into a [`RunError`] a person can act on.
//!
//! Two clocks bound an invocation. The epoch deadline stops guest code
//! that computes for too long; it cannot interrupt a guest blocked in a host
//! call, so a `tokio` timeout around the whole call backs it up (and the
//! host calls themselves never wait past the run's deadline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Shared;
use crate::logs::{Level, LogBuffer, LogPipe, SharedLogs};
use crate::net::{Grants, NetSession};
use crate::pool::Slot;
use crate::types::{PluginKind, Report, RunError, RunErrorKind};

/// Time the outer timeout allows beyond the deadline, for the epoch
/// mechanism to stop guest code first (it reports more precisely).
const GRACE: Duration = Duration::from_millis(100);

/// The data of one invocation's `Store`.
pub(crate) struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub logs: SharedLogs,
    pub net: NetSession,
    pipes: [LogPipe; 2],
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and remembers that it did, because a refused growth
/// surfaces as an ordinary trap.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub hit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
struct MemoryLimitHit;

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Err(MemoryLimitHit.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 20_000)
    }
}

/// A store ready to instantiate a plugin in, holding a pool slot.
pub(crate) struct Invocation {
    pub store: Store<State>,
    plugin: String,
    timeout: Duration,
    started: Instant,
    _slot: Slot,
}

impl Invocation {
    /// Takes a slot for a call of `kind` (or gives up after `slot_wait`)
    /// and builds the store. The run's timeout starts once it has a slot.
    pub async fn start(
        shared: &Arc<Shared>,
        kind: PluginKind,
        plugin: String,
        grants: Grants,
        timeout: Duration,
    ) -> Result<Invocation, RunErrorKind> {
        let slot = shared.pool.acquire(kind).await?;
        let limits = &shared.config.limits;
        let timeout = timeout.min(limits.max_timeout);
        let started = Instant::now();
        let deadline = started + timeout;

        let logs = LogBuffer::shared(limits.max_log_bytes, limits.max_log_lines);
        let pipes = [LogPipe::new(&logs, "stdout", Level::Info), LogPipe::new(&logs, "stderr", Level::Warn)];
        let wasi = WasiCtx::builder().stdout(pipes[0].clone()).stderr(pipes[1].clone()).build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        let state = State {
            wasi,
            table,
            limiter: Limiter { memory_bytes: limits.memory_bytes, hit: false },
            logs,
            // Network calls end a little before the run does, so the plugin
            // has time to turn "no answer" into a verdict of its own.
            net: NetSession {
                shared: shared.net.clone(),
                grants,
                deadline: deadline - (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)),
                refusals: Vec::new(),
            },
            pipes,
        };
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(limits.memory_bytes);
        // Yield to the executor every tick so a busy guest shares its
        // thread; stop it once the deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        Ok(Invocation { store, plugin, timeout, started, _slot: slot })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` (instantiate and call the export) under the hard
    /// timeout and turns the result into a report.
    pub async fn run<T>(
        mut self,
        call: impl AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<Result<T, RunErrorKind>>,
    ) -> Report<T> {
        let result = tokio::time::timeout(self.timeout + GRACE, call(&mut self.store)).await;
        let state = self.store.data();
        for pipe in &state.pipes {
            pipe.flush_partial();
        }
        let outcome = match result {
            Err(_) => Err(RunErrorKind::Timeout { ms: self.timeout.as_millis() as u64 }),
            Ok(Ok(inner)) => inner,
            Ok(Err(e)) => Err(classify(&e, state, self.timeout)),
        };
        let state = self.store.into_data();
        let (logs, logs_dropped) = state.logs.lock().unwrap_or_else(|p| p.into_inner()).take();
        Report {
            outcome: outcome.map_err(|kind| RunError { plugin: self.plugin, kind }),
            logs,
            logs_dropped,
            refusals: state.net.refusals,
            elapsed: self.started.elapsed(),
        }
    }
}

/// Names what stopped the guest.
fn classify(e: &wasmtime::Error, state: &State, timeout: Duration) -> RunErrorKind {
    if state.limiter.hit || e.is::<MemoryLimitHit>() {
        return RunErrorKind::MemoryLimit { limit_bytes: state.limiter.memory_bytes };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RunErrorKind::Timeout { ms: timeout.as_millis() as u64 },
        Some(Trap::UnreachableCodeReached) => {
            let stderr = state.logs.lock().unwrap_or_else(|p| p.into_inner()).stderr();
            match panic_message(&stderr) {
                Some(message) => RunErrorKind::Panicked { message },
                None => RunErrorKind::Trapped { message: with_location(e, "unreachable instruction executed") },
            }
        }
        Some(trap) => {
            let what = trap.to_string();
            RunErrorKind::Trapped { message: with_location(e, what.trim_start_matches("wasm trap: ")) }
        }
        // Errors raised by host functions (a full resource table, a bad
        // resource handle) and instantiation failures.
        None => RunErrorKind::Trapped { message: format!("{e:#}") },
    }
}

fn with_location(e: &wasmtime::Error, what: &str) -> String {
    let frame = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames().iter().find_map(|f| f.func_name().map(|n| format!("{:#}", rustc_demangle::demangle(n))))
    });
    match frame {
        Some(func) => format!("{what} in {func}"),
        None => what.to_string(),
    }
}

/// `thread '<unnamed>' panicked at src/lib.rs:9:5:\nboom` -> `boom (at src/lib.rs:9:5)`.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
    let message: Vec<&str> = message.lines().take_while(|l| !l.starts_with("note:")).collect();
    Some(format!("{} (at {})", message.join("\n").trim(), location.trim_end_matches(':')))
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_messages_read_like_rust() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(super::panic_message(stderr).unwrap(), "boom (at src/lib.rs:9:5)");
        assert_eq!(super::panic_message("just an error"), None);
    }
}
