//! The `ttp` binary's commands, one module each; `main.rs` holds the
//! argument definitions' entry point and dispatch. Each command is a thin
//! layer over the library.

pub(crate) mod check;
pub(crate) mod export;
pub(crate) mod query;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod tagging;
pub(crate) mod testing;
pub(crate) mod worker;

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::io::IsTerminal;
use ttp_engine::rule::load::{load_dir, LoadedRules};
use ttp_engine::rule::parse::LoadOptions;

/// A line on stdout. A closed stdout (`ttp … | head`) surfaces as an
/// `io::Error` of kind `BrokenPipe`, which `main` turns into a quiet exit 0.
macro_rules! outln {
    () => {
        std::io::Write::write_all(&mut std::io::stdout().lock(), b"\n")?
    };
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Text on stdout, without a newline (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!($($arg)*))?
    };
}

pub(crate) use {out, outln};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// When to colour what goes to a terminal.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Color {
    /// When the output is a terminal and `NO_COLOR` is unset or empty.
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether tables on stdout carry ANSI colours.
    pub(crate) fn for_stdout(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }

    /// Whether logs on stderr carry ANSI colours.
    pub(crate) fn for_stderr(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Whether an error is a closed stdout (nothing left to say: not a failure).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
            || c.downcast_ref::<csv::Error>().is_some_and(|e| {
                matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

pub(crate) fn load_rules(dir: &std::path::Path, load: LoadOptions) -> Result<LoadedRules> {
    load_dir(dir, load)
        .with_context(|| format!("cannot read the rules directory {}", dir.display()))
}
