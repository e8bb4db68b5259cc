//! Exports of the tags for other tools: an ATT&CK Navigator layer.
//! Built from the library's rollups, so every export counts what
//! `ttp query` and `ttp serve` count.

pub mod navigator;
