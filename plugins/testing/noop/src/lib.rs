//! Says "up" without looking at anything: the benchmark of invocation
//! overhead and the simplest end-to-end plugin.

use tocsin_plugin_sdk::prelude::*;

struct Noop;

impl Check for Noop {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "noop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: tocsin_plugin_sdk::PluginKind::Check,
            description: "Always up; for tests and benchmarks".into(),
            config_schema: r#"{"type":"object"}"#.into(),
        }
    }

    fn run(_request: Request) -> Result<Outcome, String> {
        Ok(Outcome::up("ok"))
    }
}

export_check!(Noop);
