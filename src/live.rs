//! Counters of a running `ttp run` or `ttp worker`, shared with the HTTP
//! server it runs (`--serve`) so that `/metrics` shows what the process is
//! doing now, not only what the database holds.
//!
//! Plain relaxed atomics: the tagging thread stores its running totals
//! after each batch, the writer adds the tags it newly stored, the server
//! reads whatever is there when it is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a long-running command has done so far.
#[derive(Debug, Default)]
pub struct Live {
    /// Events read (`ttp run`: lines; `ttp worker`: bus events).
    pub events_read: AtomicU64,
    /// Events refused (bad lines) or dropped (bus events without an anchor).
    pub events_rejected: AtomicU64,
    pub tags_emitted: AtomicU64,
    /// Tags the writer stored that were not there before.
    pub tags_new: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_rejections: AtomicU64,
    /// Events waiting for the tagger (`ttp worker`).
    pub queue_depth: AtomicU64,
    /// The bus connection is up (`ttp worker`).
    pub bus_connected: AtomicBool,
    /// Set by `ttp worker`, which has a bus to report on.
    pub has_bus: AtomicBool,
    /// The correlation stage: events counted, firings, groups evicted to
    /// stay within `--max-groups`, and groups held now.
    pub correlation_observed: AtomicU64,
    pub correlation_fired: AtomicU64,
    pub correlation_evicted: AtomicU64,
    pub correlation_groups: AtomicU64,
}

impl Live {
    pub fn set(counter: &AtomicU64, v: u64) {
        counter.store(v, Ordering::Relaxed);
    }

    /// Publishes the correlation stage's totals.
    pub fn set_correlation(&self, c: &crate::correlate::stage::CorrelationStats) {
        Live::set(&self.correlation_observed, c.observed);
        Live::set(&self.correlation_fired, c.fired);
        Live::set(&self.correlation_evicted, c.evicted);
        Live::set(&self.correlation_groups, c.groups);
    }

    /// The counters as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "ttp_events_read_total",
                "Events read by this process.",
                get(&self.events_read),
            ),
            (
                "ttp_events_rejected_total",
                "Events refused (bad lines) or dropped (no anchor) by this process.",
                get(&self.events_rejected),
            ),
            (
                "ttp_tags_emitted_total",
                "Tags emitted by this process's rules, at or above the floor or not.",
                get(&self.tags_emitted),
            ),
            (
                "ttp_tags_new_total",
                "Tags this process stored that were not stored before.",
                get(&self.tags_new),
            ),
            (
                "ttp_reloads_total",
                "Rule reloads applied by this process.",
                get(&self.reloads),
            ),
            (
                "ttp_reload_rejections_total",
                "Rule edits this process refused (the last good version kept serving).",
                get(&self.reload_rejections),
            ),
            (
                "ttp_correlation_events_total",
                "Events counted in correlation windows by this process.",
                get(&self.correlation_observed),
            ),
            (
                "ttp_correlation_fired_total",
                "Correlation firings (a group's condition held) in this process.",
                get(&self.correlation_fired),
            ),
            (
                "ttp_correlation_evicted_total",
                "Correlation groups evicted to stay within the group bound (--max-groups).",
                get(&self.correlation_evicted),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ttp_correlation_groups Correlation groups held in memory now.\n# TYPE ttp_correlation_groups gauge\nttp_correlation_groups {}",
            get(&self.correlation_groups)
        );
        if self.has_bus.load(Ordering::Relaxed) {
            let _ = writeln!(
                out,
                "# HELP ttp_queue_depth Bus events waiting for the tagger.\n# TYPE ttp_queue_depth gauge\nttp_queue_depth {}",
                get(&self.queue_depth)
            );
            let _ = writeln!(
                out,
                "# HELP ttp_bus_connected Whether the bus connection is up.\n# TYPE ttp_bus_connected gauge\nttp_bus_connected {}",
                u8::from(self.bus_connected.load(Ordering::Relaxed))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_the_bus_only_with_a_bus() {
        let live = Live::default();
        Live::set(&live.events_read, 7);
        live.tags_new.fetch_add(3, Ordering::Relaxed);
        live.set_correlation(&crate::correlate::stage::CorrelationStats {
            evicted: 4,
            groups: 9,
            ..Default::default()
        });
        let text = live.render();
        assert!(
            text.contains("\nttp_correlation_evicted_total 4\n"),
            "{text}"
        );
        assert!(text.contains("\nttp_correlation_groups 9\n"), "{text}");
        assert!(text.contains("\nttp_events_read_total 7\n"), "{text}");
        assert!(text.contains("\nttp_tags_new_total 3\n"), "{text}");
        assert!(!text.contains("ttp_bus_connected"));
        live.has_bus.store(true, Ordering::Relaxed);
        live.bus_connected.store(true, Ordering::Relaxed);
        assert!(live.render().contains("\nttp_bus_connected 1\n"));
    }
}
