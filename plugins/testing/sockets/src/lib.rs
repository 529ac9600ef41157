//! Tries to bypass the host's network grants with its own socket.

use tocsin_plugin_sdk::prelude::*;

struct Sockets;

impl Check for Sockets {
    fn describe() -> PluginInfo {
        PluginInfo::check::<()>("sockets", env!("CARGO_PKG_VERSION"), "Opens its own sockets")
    }

    fn run(request: Request) -> Result<Outcome, String> {
        match std::net::TcpStream::connect(request.target.as_str()) {
            Ok(_) => Ok(Outcome::up("connected around the host")),
            Err(e) => Ok(Outcome::down(e.to_string())),
        }
    }
}

export_check!(Sockets);
