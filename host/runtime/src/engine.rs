//! The one `Engine` of a process and the `Linker` every plugin is linked
//! with.
//!
//! The pooling allocator keeps a fixed number of instance slots with their
//! memories reserved up front, so instantiating a plugin is a copy-on-write
//! remap rather than an mmap; epoch interruption lets a ticker thread stop
//! guest code that runs past its deadline without instrumenting every loop
//! with fuel.

use std::sync::Weak;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::RuntimeConfig;
use crate::invoke::State;

/// How often the epoch advances: the granularity of deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances, memories and tables one component may use. A Rust
/// component needs a few core instances (its module plus shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

pub(crate) fn build(config: &RuntimeConfig) -> Result<Engine, crate::Error> {
    let slots = config.max_concurrent.max(1);
    let memory = config.limits.memory_bytes;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT / 2)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * MEMORIES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(slots * TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(20_000)
        .total_stacks(slots)
        .max_memory_size(memory)
        // Reset a reused slot by rewriting only the pages the last guest
        // dirtied (PAGEMAP_SCAN, Linux 6.7+) and keep them resident: no
        // madvise, no page faults on the next instantiation.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10);

    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // The default reservation (4 GiB per memory) exhausts the address
        // space with a thousand slots; the cap on memory is far below it.
        .memory_reservation(memory as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0)
        .max_wasm_stack(512 << 10)
        .async_stack_size(1 << 20);
    Engine::new(&wasm).map_err(|e| crate::Error::Engine(format!("{e:#}")))
}

/// Advances the epoch until the runtime is dropped.
pub(crate) fn start_ticker(shared: Weak<crate::Shared>) {
    std::thread::Builder::new()
        .name("tocsin-epoch".into())
        .spawn(move || {
            while let Some(shared) = shared.upgrade() {
                shared.engine.increment_epoch();
                drop(shared);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// The imports every plugin may use: the `tocsin:plugin` host interfaces
/// and the WASI interfaces of the `sandbox` world. Deliberately absent:
/// `wasi:sockets` (network access goes through the host interfaces, where
/// grants are enforced) and anything else the `sandbox` world does not list.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<State>, crate::Error> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi_io::bindings::wasi::io;

    let mut linker = Linker::new(engine);
    let l = &mut linker;
    let r = (|| -> wasmtime::Result<()> {
        crate::bindings::check::Check::add_to_linker::<State, HasSelf<State>>(l, |s| s)?;
        io::error::add_to_linker::<State, HasTable>(l, |s| &mut s.table)?;
        io::poll::add_to_linker::<State, HasTable>(l, |s| &mut s.table)?;
        io::streams::add_to_linker::<State, HasTable>(l, |s| &mut s.table)?;
        clocks::wall_clock::add_to_linker::<State, WasiClocks>(l, State::clocks)?;
        clocks::monotonic_clock::add_to_linker::<State, WasiClocks>(l, State::clocks)?;
        filesystem::types::add_to_linker::<State, WasiFilesystem>(l, State::filesystem)?;
        filesystem::preopens::add_to_linker::<State, WasiFilesystem>(l, State::filesystem)?;
        random::random::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
        random::insecure::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
        random::insecure_seed::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
        cli::exit::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::environment::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::terminal_input::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::terminal_output::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::terminal_stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::terminal_stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
        cli::terminal_stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
        Ok(())
    })();
    r.map_err(|e| crate::Error::Engine(format!("linking: {e:#}")))?;
    Ok(linker)
}

struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}
