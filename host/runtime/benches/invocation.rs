//! Invocation overhead: the whole cost of running a trivial check once in a
//! fresh instance (store, instantiation, call, report), on one thread.
//!
//! `cargo bench -p tocsin-runtime --bench invocation`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tocsin_runtime::{CheckCall, RunContext, Runtime, RuntimeConfig};

fn invocation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runtime = rt.block_on(async { Runtime::new(RuntimeConfig::default()).unwrap() });
    let noop = rt.block_on(runtime.load(tocsin_builtins::NOOP.wasm)).unwrap();
    let call = CheckCall {
        target: "https://example.com/".into(),
        config: "{}".into(),
        context: RunContext { check: "bench".into(), node: "n1".into(), location: "here".into(), ..Default::default() },
        allow: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    let mut group = c.benchmark_group("invocation");
    group.bench_function("noop check, fresh instance", |b| {
        b.to_async(&rt).iter(|| async {
            let report = noop.check(call.clone()).await;
            assert!(report.outcome.is_ok());
        })
    });
    group.finish();
}

criterion_group!(benches, invocation);
criterion_main!(benches);
