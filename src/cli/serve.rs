//! `ttp serve`: DECNET's TTP REST API over a tag database.

use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use ttp_engine::serve::{serve as run_server, ServeOptions, Server};

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The database: ttp's own or DECNET's.
    #[arg(long, env = "TTP_DB", default_value = "ttp.db")]
    db: PathBuf,
    /// Address and port to listen on. Without --tokens (and not on DECNET's
    /// database) only a loopback address is accepted.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Bearer tokens, one `TOKEN ROLE [NAME]` per line (ROLE: viewer or
    /// admin). On DECNET's database, DECNET's dashboard tokens are checked
    /// instead unless this is given.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// DECNET's JWT secret, for DECNET's dashboard tokens.
    #[arg(long, env = "DECNET_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Read the rule catalogue of GET /ttp/rules from this directory (else
    /// from the catalogue `ttp run` / `ttp worker` store in the database).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Write times as UTC with a trailing `Z` (DECNET's dashboard expects
    /// them without, and reads them as local time).
    #[arg(long)]
    utc: bool,
    /// Answer invalid parameters with FastAPI's error list, as DECNET's
    /// developer mode does.
    #[arg(long, env = "DECNET_DEVELOPER", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    developer: bool,
    /// Give up on a request after this long (503).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
}

pub(crate) fn serve(args: ServeArgs) -> Result<ExitCode> {
    let opts = ServeOptions {
        db: args.db,
        listen: args.listen,
        tokens: args.tokens,
        jwt_secret: args.jwt_secret,
        rules: args.rules,
        utc: args.utc,
        developer: args.developer,
        request_timeout: args.request_timeout,
        live: None,
    };
    run_server(opts, stop_signal())?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping: finishing requests in flight");
}

/// `--serve ADDR` of `ttp run` and `ttp worker`: the API in the same
/// process, over the same database.
#[derive(clap::Args)]
pub(crate) struct EmbeddedServeArgs {
    /// Also serve the TTP API (as `ttp serve` does) on this address, over
    /// the same database; /metrics then shows this process's live counters.
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
    /// With --serve: bearer tokens, one `TOKEN ROLE [NAME]` per line.
    #[arg(long, requires = "serve")]
    tokens: Option<PathBuf>,
    /// With --serve on DECNET's database: DECNET's JWT secret.
    #[arg(long, env = "DECNET_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// With --serve: times as UTC with a trailing `Z`.
    #[arg(long, requires = "serve")]
    utc: bool,
}

/// A server running on a thread of its own until [`Embedded::stop`].
pub(crate) struct Embedded {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(), ttp_engine::serve::ServeError>>,
}

impl EmbeddedServeArgs {
    /// Binds and starts the server when `--serve` was given. The database
    /// is created (and migrated) first, so the server has a schema to read.
    pub(crate) fn start(
        self,
        db: &std::path::Path,
        rules: &std::path::Path,
        store: &ttp_engine::store::StoreOptions,
        live: Arc<ttp_engine::live::Live>,
    ) -> Result<Option<Embedded>> {
        let Some(listen) = self.serve else {
            return Ok(None);
        };
        drop(ttp_engine::store::open(db, store)?);
        let mut opts = ServeOptions::new(db.to_path_buf(), listen);
        opts.tokens = self.tokens;
        opts.jwt_secret = self.jwt_secret;
        opts.rules = Some(rules.to_path_buf());
        opts.utc = self.utc;
        opts.live = Some(live);
        let server = Server::bind(opts)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ttp-serve".into())
            .spawn(move || {
                server.run(async move {
                    while !flag.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })?;
        Ok(Some(Embedded { stop, thread }))
    }
}

impl Embedded {
    /// Stops serving (requests in flight finish) and reports a server that
    /// failed while running.
    pub(crate) fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(r) => Ok(r?),
            Err(_) => anyhow::bail!("the HTTP server thread panicked"),
        }
    }
}
