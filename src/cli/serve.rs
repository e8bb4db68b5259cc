//! `ttp serve`: DECNET's TTP REST API over a tag database.

use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use ttp_engine::serve::{serve as run_server, ServeOptions};

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
    };
    run_server(opts, async {
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
    })?;
    Ok(ExitCode::SUCCESS)
}
