//! The processes `tocsin dev` runs, and their supervision.
//!
//! Each child gets a process group of its own, so a Ctrl-C in the terminal
//! reaches `tocsin dev` alone, which then stops the children in order (the
//! watchdog first, so it does not raise an alarm about the others going
//! away). Each writes stdout and stderr to a log file. On Linux the kernel
//! sends a child SIGTERM should `tocsin dev` die without stopping it, so
//! none outlives it even after a SIGKILL. Stopping is SIGTERM, a deadline,
//! then SIGKILL.

use std::ffi::OsStr;
use std::future::Future;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

pub struct Child {
    pub name: String,
    pub log: PathBuf,
    pub pid: u32,
    process: tokio::process::Child,
    exited: bool,
}

/// Why `tocsin dev` stops.
pub enum Halt {
    /// Ctrl-C, SIGTERM or SIGHUP: the normal end.
    Asked,
    /// A child exited by itself.
    Died { name: String, status: String, log: PathBuf },
    /// Starting something failed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Halt {
    fn from(e: anyhow::Error) -> Halt {
        Halt::Failed(e)
    }
}

pub struct Children {
    list: Vec<Child>,
    /// Cancelled by the first signal.
    pub stop: CancellationToken,
    /// Cancelled by the second: kill at once.
    force: CancellationToken,
}

impl Children {
    /// Takes over SIGINT, SIGTERM and SIGHUP before any child exists.
    pub fn new() -> anyhow::Result<Children> {
        let listen = |kind| signal(kind).context("listening for signals");
        let mut int = listen(SignalKind::interrupt())?;
        let mut term = listen(SignalKind::terminate())?;
        let mut hup = listen(SignalKind::hangup())?;
        let (stop, force) = (CancellationToken::new(), CancellationToken::new());
        let tokens = [stop.clone(), force.clone()];
        tokio::spawn(async move {
            for token in tokens {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                token.cancel();
            }
        });
        Ok(Children { list: Vec::new(), stop, force })
    }

    /// Starts `program args` with its output in `log`. `TOCSIN_*` variables
    /// of this environment are not passed on (a `TOCSIN_DATABASE_URL` meant
    /// for production must not reach a dev controller); `env` is.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[&OsStr],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<&Child> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .process_group(0)
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("TOCSIN_")) {
                cmd.env_remove(key);
            }
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec the closure makes only
            // async-signal-safe calls (prctl, getppid) and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent died before prctl: no signal would come.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let process = cmd.spawn().with_context(|| format!("starting {name} ({})", program.display()))?;
        let pid = process.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        self.list.push(Child { name: name.to_string(), log: log.to_path_buf(), pid, process, exited: false });
        Ok(self.list.last().expect("just pushed"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Child> {
        self.list.iter()
    }

    /// The first child that exited by itself, if one did.
    fn exited(&mut self) -> Option<Halt> {
        for child in self.list.iter_mut().filter(|c| !c.exited) {
            if let Ok(Some(status)) = child.process.try_wait() {
                child.exited = true;
                return Some(died(child, status));
            }
        }
        None
    }

    /// Polls `probe` every 50 ms until it has an answer, giving up at
    /// `timeout`, when a child exits, or when a signal asks to stop.
    pub async fn poll<T, F, Fut>(&mut self, what: &str, timeout: Duration, mut probe: F) -> Result<T, Halt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stop.is_cancelled() {
                return Err(Halt::Asked);
            }
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            if let Some(halt) = self.exited() {
                return Err(halt);
            }
            if Instant::now() >= deadline {
                return Err(Halt::Failed(anyhow!("{what}: not within {}s", timeout.as_secs())));
            }
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Waits until a signal asks to stop or a child exits.
    pub async fn watch(&mut self) -> Halt {
        let stop = self.stop.clone();
        let running = self.list.iter_mut().filter(|c| !c.exited).map(|c| {
            Box::pin(async move {
                let status = c.process.wait().await;
                (c, status)
            })
        });
        let running: Vec<_> = running.collect();
        if running.is_empty() {
            stop.cancelled().await;
            return Halt::Asked;
        }
        tokio::select! {
            _ = stop.cancelled() => Halt::Asked,
            ((child, status), _, _) = futures::future::select_all(running) => {
                child.exited = true;
                match status {
                    Ok(status) => died(child, status),
                    Err(e) => Halt::Failed(anyhow!("waiting for {}: {e}", child.name)),
                }
            }
        }
    }

    /// Stops every child still running, the last started first: SIGTERM,
    /// then SIGKILL after [`STOP_DEADLINE`] or a second Ctrl-C. Returns
    /// what did not go cleanly.
    pub async fn stop_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for child in self.list.iter_mut().rev().filter(|c| !c.exited) {
            child.exited = true;
            if let Ok(Some(status)) = child.process.try_wait() {
                problems.push(format!("{} had exited ({status}); its log: {}", child.name, child.log.display()));
                continue;
            }
            print!("stopping {}… ", child.name);
            let _ = std::io::stdout().flush();
            let started = Instant::now();
            // SAFETY: kill(2) on the pid of a child not yet reaped, so not reused.
            unsafe { libc::kill(child.pid as libc::pid_t, libc::SIGTERM) };
            let status = tokio::select! {
                status = child.process.wait() => status.ok(),
                _ = tokio::time::sleep(STOP_DEADLINE) => None,
                _ = self.force.cancelled() => None,
            };
            // Still starting, it may not handle SIGTERM yet: ended by it is stopped too.
            let stopped = |s: &ExitStatus| s.success() || s.signal() == Some(libc::SIGTERM);
            match status {
                Some(status) if stopped(&status) => println!("stopped in {:.1}s", started.elapsed().as_secs_f64()),
                Some(status) => {
                    println!("{status}");
                    problems.push(format!(
                        "{} exited with {status} when asked to stop; its log: {}",
                        child.name,
                        child.log.display()
                    ));
                }
                None => {
                    let _ = child.process.kill().await;
                    println!("killed");
                    problems.push(format!(
                        "{} did not stop within {}s of SIGTERM and was killed; its log: {}",
                        child.name,
                        started.elapsed().as_secs(),
                        child.log.display()
                    ));
                }
            }
        }
        problems
    }
}

fn died(child: &Child, status: ExitStatus) -> Halt {
    Halt::Died { name: child.name.clone(), status: status.to_string(), log: child.log.clone() }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first line of a log file that contains `needle`.
pub fn find_line(path: &Path, needle: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find(|l| l.contains(needle)).map(str::to_string)
}
