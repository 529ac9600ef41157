//! The host functions plugins import, wired to the modules that implement
//! them. Nothing here decides anything: grants live in `net`, budgets in
//! `logs`.

use wasmtime::component::Resource;

use crate::bindings::network::NetError;
use crate::bindings::{dns, http, log, network, tcp, tls, types};
use crate::invoke::State;
use crate::logs::Level;
use crate::net;

impl types::Host for State {}
impl network::Host for State {}

impl log::Host for State {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).push(level, "log", &message);
        Ok(())
    }
}

impl http::Host for State {
    async fn send(&mut self, request: http::Request) -> wasmtime::Result<Result<http::Response, NetError>> {
        Ok(net::http::send(&mut self.net, request).await)
    }
}

impl dns::Host for State {
    async fn resolve(&mut self, query: dns::Query) -> wasmtime::Result<Result<dns::Answer, NetError>> {
        Ok(net::dns::resolve(&mut self.net, query).await)
    }
}

impl tls::Host for State {
    async fn inspect(
        &mut self,
        host: String,
        port: u16,
        options: tls::InspectOptions,
    ) -> wasmtime::Result<Result<tls::Report, NetError>> {
        Ok(net::tls::inspect(&mut self.net, &host, port, options).await)
    }
}

impl tcp::Host for State {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        options: tcp::ConnectOptions,
    ) -> wasmtime::Result<Result<Resource<net::tcp::Connection>, NetError>> {
        match net::tcp::connect(&mut self.net, &host, port, options).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl tcp::HostConnection for State {
    async fn info(&mut self, conn: Resource<net::tcp::Connection>) -> wasmtime::Result<tcp::ConnectInfo> {
        Ok(self.table.get(&conn)?.info())
    }

    async fn send(
        &mut self,
        conn: Resource<net::tcp::Connection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), NetError>> {
        let deadline = self.net.deadline;
        Ok(self.table.get_mut(&conn)?.send(&data, deadline).await)
    }

    async fn receive(
        &mut self,
        conn: Resource<net::tcp::Connection>,
        max_bytes: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, NetError>> {
        let max = (max_bytes as usize).min(self.net.shared.max_body_bytes);
        let deadline = self.net.op_deadline(timeout_ms);
        Ok(self.table.get_mut(&conn)?.receive(max, deadline).await)
    }

    async fn drop(&mut self, conn: Resource<net::tcp::Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}
