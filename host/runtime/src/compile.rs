//! Compiling a plugin, bounded in time and memory.
//!
//! Cranelift is an optimising compiler: its time and memory grow faster
//! than linearly with the size of one function, and wasmtime offers no way
//! to cap or cancel a compilation (see bytecodealliance/wasmtime#4060: the
//! outliers are by design). An upload is the one input an API caller
//! (an editor) hands the compiler, so it is bounded three ways:
//!
//! 1. Before compiling, the code of every core module in the component is
//!    measured (wasmparser, without compiling anything): how many
//!    functions, and for each its body's bytes and its locals. A plugin
//!    over a bound is refused naming the function and the bound
//!    (`plugin_too_complex`). This bounds what one compilation can cost;
//!    the `.wasm` size limit bounds the total.
//! 2. The compilation runs on a blocking thread while the caller waits at
//!    most `compile_timeout`; past it the load fails (`compile_timeout`)
//!    and the request is answered. The thread cannot be stopped and is
//!    abandoned: it finishes (bounded by 1.) and its result is dropped.
//! 3. One compilation at a time: the thread holds the runtime's compiler
//!    permit until it ends, so abandoned compilations do not pile up;
//!    a load that cannot get the permit before its deadline fails too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmparser::{Encoding, Parser, Payload};
use wasmtime::component::Component;

use crate::Shared;
use crate::config::Limits;
use crate::plugin::LoadError;

/// Refuses a component whose code is over the limits, before any of it is
/// compiled.
pub(crate) fn measure(wasm: &[u8], limits: &Limits) -> Result<(), LoadError> {
    let too_complex = |what: String| Err(LoadError::TooComplex { what });
    let (mut modules, mut functions, mut in_module) = (0usize, 0usize, 0usize);
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| LoadError::Invalid(e.to_string()))? {
            Payload::Version { encoding: Encoding::Module, .. } => {
                modules += 1;
                in_module = 0;
            }
            Payload::CodeSectionStart { count, .. } => {
                functions += count as usize;
                if functions > limits.max_functions {
                    return too_complex(format!(
                        "it has at least {functions} functions; the limit is {}",
                        limits.max_functions
                    ));
                }
            }
            Payload::CodeSectionEntry(body) => {
                in_module += 1;
                let at = || format!("function {} of core module {}", in_module - 1, modules.saturating_sub(1));
                let bytes = body.range().len();
                if bytes > limits.max_function_bytes {
                    return too_complex(format!(
                        "{} has a body of {bytes} bytes; the limit is {}",
                        at(),
                        limits.max_function_bytes
                    ));
                }
                let mut locals = 0u64;
                for group in body.get_locals_reader().map_err(|e| LoadError::Invalid(e.to_string()))? {
                    locals += u64::from(group.map_err(|e| LoadError::Invalid(e.to_string()))?.0);
                    if locals > limits.max_function_locals {
                        return too_complex(format!(
                            "{} has more than {} locals; the limit is {}",
                            at(),
                            limits.max_function_locals,
                            limits.max_function_locals
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The compiled component: from the cache when an authentic artifact is
/// there, else compiled (and cached) within `compile_timeout`.
pub(crate) async fn compile(shared: &Arc<Shared>, sha256: &str, wasm: &[u8]) -> Result<Component, LoadError> {
    if let Some(component) = shared.cache.as_ref().and_then(|c| c.get(&shared.engine, sha256)) {
        return Ok(component);
    }
    measure(wasm, &shared.config.limits)?;
    let limit = shared.config.limits.compile_timeout;
    let started = Instant::now();
    let timed_out = || {
        tracing::warn!(
            sha256,
            bytes = wasm.len(),
            limit_ms = limit.as_millis() as u64,
            "a plugin took too long to compile; refused"
        );
        LoadError::CompileTimeout { ms: limit.as_millis() as u64 }
    };
    let permit = tokio::time::timeout(limit, shared.compiler.clone().acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .expect("the compiler semaphore is never closed");
    let (worker, wasm_owned, sha) = (shared.clone(), wasm.to_vec(), sha256.to_string());
    let compiling = tokio::task::spawn_blocking(move || -> wasmtime::Result<Component> {
        let _permit = permit;
        let artifact = worker.engine.precompile_component(&wasm_owned)?;
        if let Some(cache) = &worker.cache {
            cache.put(&sha, &artifact);
        }
        worker.stats.compiled.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `artifact` was produced just now by this engine.
        unsafe { Component::deserialize(&worker.engine, &artifact) }
    });
    let remaining = limit.saturating_sub(started.elapsed());
    let compiled = tokio::time::timeout(remaining, compiling)
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| LoadError::Invalid(format!("compilation stopped: {e}")))?;
    compiled.map_err(|e| LoadError::Invalid(format!("{e:#}")))
}
