//! ttp-engine: labels honeypot and deception telemetry with MITRE ATT&CK
//! tactics and techniques, with DECNET-compatible rules and tags.
//!
//! See `ARCHITECTURE.md` for a map of the modules.

pub mod attack;
pub mod bench;
pub mod bus;
pub mod catalog;
pub mod correlate;
pub mod daemon;
pub mod diag;
pub mod engine;
pub mod event;
pub mod export;
pub mod index;
pub mod lifter;
pub mod lifters;
pub mod literals;
pub mod live;
pub mod position;
pub mod pyjson;
pub mod pyregex;
pub mod query;
pub mod rule;
pub mod ruleset;
pub mod ruletest;
pub mod run;
pub mod serve;
pub mod state;
pub mod store;
pub mod tag;
pub mod text;
pub mod timefmt;
pub mod worker;
pub mod yaml;
