//! Does, on request, everything a plugin must not be allowed to get away
//! with. `config.action` picks the misdeed.

use tocsin_plugin_sdk::prelude::*;

/// Lines in a log or stdout flood (the sandbox tests count the dropped ones).
const FLOOD: u32 = 100_000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    action: Action,
    /// For `fetch`: the URL to request.
    #[serde(default)]
    url: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Action {
    /// Compute forever.
    Loop,
    /// Block in a host call (sleep) forever.
    Sleep,
    /// Allocate until memory runs out.
    Memory,
    Panic,
    /// Execute `unreachable`.
    Trap,
    /// Recurse until the stack overflows.
    StackOverflow,
    /// Log a million lines.
    LogFlood,
    /// Print a million lines to stdout.
    StdoutFlood,
    /// Return a 1 MiB message.
    HugeMessage,
    /// Return ten thousand metrics.
    ManyMetrics,
    /// GET `url` and report what happened.
    Fetch,
    /// Return an error of its own.
    Fail,
}

struct Misbehave;

impl Check for Misbehave {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>("misbehave", env!("CARGO_PKG_VERSION"), "Misbehaves on purpose")
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        match config.action {
            Action::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Action::Sleep => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Action::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Action::Panic => panic!("deliberate panic for the test"),
            Action::Trap => core::arch::wasm32::unreachable(),
            Action::StackOverflow => Ok(Outcome::up(format!("{}", recurse(std::hint::black_box(1))))),
            // A flood is FLOOD lines, 500 times the host's budget of 200:
            // enough to show the budget holds, few enough that a debug
            // build of the host gets through it well within the deadline
            // on a loaded 2-core machine (1 000 000 stdout lines took over
            // 30 s there).
            Action::LogFlood => {
                for i in 0..FLOOD {
                    tocsin_plugin_sdk::log!(Info, "line {i} of a flood");
                }
                Ok(Outcome::up("flooded the log"))
            }
            Action::StdoutFlood => {
                for i in 0..FLOOD {
                    println!("stdout line {i}");
                }
                Ok(Outcome::up("flooded stdout"))
            }
            Action::HugeMessage => Ok(Outcome::up("x".repeat(1 << 20))),
            Action::ManyMetrics => {
                let mut outcome = Outcome::up("many metrics");
                for i in 0..10_000 {
                    outcome = outcome.metric(&format!("m{i}"), i as f64, "");
                }
                Ok(outcome)
            }
            Action::Fetch => match http::send(&http::Request::get(&config.url)) {
                Ok(response) => Ok(Outcome::up(format!("got {}", response.status))),
                Err(NetError::Denied(why)) => Ok(Outcome::down(format!("denied: {why}"))),
                Err(other) => Ok(Outcome::down(format!("failed: {other:?}"))),
            },
            Action::Fail => Err("the plugin gave up on purpose".into()),
        }
    }
}

fn recurse(n: u64) -> u64 {
    let big = std::hint::black_box([n; 64]);
    if big[0] == 0 { 0 } else { recurse(n + 1) + big[63] }
}

export_check!(Misbehave);
