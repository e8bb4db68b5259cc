//! Dispatch: one event → every tagger that handles its source kind, in
//! composite order → tags.
//!
//! All taggers' indexes live in one immutable [`Snapshot`] behind an
//! `ArcSwap`. An event loads the snapshot once and is evaluated entirely
//! against it, so a reload (which stores a new snapshot) is never seen half
//! way through an event.

use crate::correlate::stage::Correlator;
use crate::event::TaggerEvent;
use crate::index::RuleIndex;
use crate::lifter::Lifter;
use crate::lifters::{self, LifterFailed};
use crate::rule::Rule;
use crate::state::{now_unix, Gate, RuleStates};
use crate::tag::{build_tag, engine_evidence, now_timestamp, Tag, TagConfig, TagSource};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every tagger's index, and the operators' rule states, at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    indexes: Vec<Arc<RuleIndex>>,
    /// Rules no tagger owns (e.g. `lifter:c2_fingerprint`): kept so that
    /// listings show them, never evaluated.
    unowned: Vec<Arc<Rule>>,
    states: Arc<RuleStates>,
    /// For each source kind any index handles: the bucket of each lifter's
    /// index (resolved once per event instead of once per lifter).
    routes: Arc<Routes>,
    /// The correlation rules (among `unowned`), for the correlation stage.
    correlations: Arc<Vec<Arc<Rule>>>,
}

/// Source kind → for each lifter's index, the bucket of that kind.
type Routes = HashMap<String, Vec<Option<usize>>, foldhash::fast::RandomState>;

/// Counters from evaluating events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EvalStats {
    /// Rules whose predicate ran (after prefiltering).
    pub rules_evaluated: u64,
    /// Regex searches abandoned (step limit, or a full-Unicode program too
    /// large to build); each counted as no match.
    pub step_limit_hits: u64,
    /// Lifters that could not evaluate an event (they yield no tags for it).
    pub lifter_failures: u64,
}

impl EvalStats {
    pub fn add(&mut self, other: EvalStats) {
        self.rules_evaluated += other.rules_evaluated;
        self.step_limit_hits += other.step_limit_hits;
        self.lifter_failures += other.lifter_failures;
    }
}

/// How candidate rules are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Through the prefilter.
    Indexed,
    /// Every rule of the source kind (the reference the index must match).
    BruteForce,
}

impl Snapshot {
    /// Partitions rules by owner (keeping their order) and builds each
    /// tagger's index.
    pub fn build(rules: &[Arc<Rule>]) -> Snapshot {
        Snapshot::rebuild(None, rules, &Lifter::ALL)
    }

    /// Like [`Snapshot::build`], but keeps `previous`'s indexes (and states)
    /// for the lifters not listed in `affected`.
    pub fn rebuild(
        previous: Option<&Snapshot>,
        rules: &[Arc<Rule>],
        affected: &[Lifter],
    ) -> Snapshot {
        let mut per: Vec<Vec<Arc<Rule>>> = vec![Vec::new(); Lifter::ALL.len()];
        let mut unowned = Vec::new();
        for rule in rules {
            match rule.owner() {
                Some(l) => per[l.index()].push(rule.clone()),
                None => unowned.push(rule.clone()),
            }
        }
        let indexes: Vec<Arc<RuleIndex>> = Lifter::ALL
            .iter()
            .zip(per)
            .map(|(l, rules)| match previous {
                Some(prev) if !affected.contains(l) => prev.indexes[l.index()].clone(),
                _ => Arc::new(RuleIndex::build(*l, rules)),
            })
            .collect();
        let routes = Arc::new(routes(&indexes));
        let correlations = Arc::new(
            unowned
                .iter()
                .filter(|r| r.correlation().is_some())
                .cloned()
                .collect(),
        );
        Snapshot {
            indexes,
            correlations,
            unowned,
            states: previous.map(|p| p.states.clone()).unwrap_or_default(),
            routes,
        }
    }

    /// The same rules with other operator states.
    pub fn with_states(&self, states: RuleStates) -> Snapshot {
        Snapshot {
            states: Arc::new(states),
            ..self.clone()
        }
    }

    /// The correlation rules, for the correlation stage.
    pub fn correlations(&self) -> &Arc<Vec<Arc<Rule>>> {
        &self.correlations
    }

    pub fn states(&self) -> &RuleStates {
        &self.states
    }

    pub fn rule_index(&self, lifter: Lifter) -> &Arc<RuleIndex> {
        &self.indexes[lifter.index()]
    }

    /// Every rule, owned or not.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.indexes
            .iter()
            .flat_map(|i| i.rules().iter())
            .chain(self.unowned.iter())
    }

    pub fn rule_count(&self) -> usize {
        self.rules().count()
    }

    /// Tags one event, appending to `out`.
    pub fn tag_event(
        &self,
        event: &TaggerEvent,
        config: &TagConfig,
        how: Evaluation,
        out: &mut Vec<Tag>,
    ) -> EvalStats {
        let mut stats = EvalStats::default();
        let mut created_at: Option<String> = None;
        let now = if self.states.is_empty() {
            0
        } else {
            now_unix()
        };
        let Some(buckets) = self.routes.get(&event.source_kind) else {
            return stats;
        };
        for (index, bucket) in self.indexes.iter().zip(buckets) {
            let Some(bucket) = *bucket else {
                continue;
            };
            if index.lifter() != Lifter::RuleEngine {
                let ts = created_at.get_or_insert_with(now_timestamp);
                let rules = index.all_in(bucket);
                let gate = |id: &str| self.states.gate(id, now);
                match lifters::run(index.lifter(), rules, event, config, &gate, ts, out) {
                    Ok(n) => stats.rules_evaluated += n,
                    Err(LifterFailed) => stats.lifter_failures += 1,
                }
                continue;
            }
            let candidates = match how {
                Evaluation::Indexed => index.candidates_in(bucket, &event.payload),
                Evaluation::BruteForce => index.all_in(bucket).collect(),
            };
            for rule in candidates {
                let gate = self.states.gate(&rule.rule_id, now);
                if gate == Gate::Off {
                    continue;
                }
                stats.rules_evaluated += 1;
                let fired = match rule.engine_matches(&event.source_kind, &event.payload) {
                    Ok(m) => m,
                    Err(e) => {
                        stats.step_limit_hits += 1;
                        tracing::warn!(
                            rule_id = %rule.rule_id,
                            source_id = %event.source_id,
                            "{e}; counted as no match"
                        );
                        false
                    }
                };
                if !fired {
                    continue;
                }
                let evidence = Arc::new(engine_evidence(rule, event));
                let ts = created_at.get_or_insert_with(now_timestamp);
                for emit in &rule.emits {
                    out.push(build_tag(
                        TagSource::of(event),
                        rule,
                        emit,
                        evidence.clone(),
                        gate.apply(emit.confidence),
                        config,
                        ts,
                    ));
                }
            }
        }
        stats
    }
}

fn routes(indexes: &[Arc<RuleIndex>]) -> Routes {
    indexes
        .iter()
        .flat_map(|i| i.kinds())
        .map(|k| {
            (
                k.to_string(),
                indexes.iter().map(|i| i.bucket_id(k)).collect(),
            )
        })
        .collect()
}

/// The live engine: the current snapshot, the tag settings and the
/// correlation stage's windows.
pub struct Engine {
    snapshot: ArcSwap<Snapshot>,
    config: TagConfig,
    correlator: Mutex<Correlator>,
}

impl Engine {
    pub fn new(rules: &[Arc<Rule>], config: TagConfig) -> Engine {
        Engine {
            snapshot: ArcSwap::from_pointee(Snapshot::build(rules)),
            config,
            correlator: Mutex::new(Correlator::default()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Installs a new snapshot in one atomic store.
    pub fn install(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn config(&self) -> &TagConfig {
        &self.config
    }

    /// Makes the correlation windows durable: their changes are kept for
    /// [`Engine::take_window_delta`], and `saved` (read back from the
    /// database) is restored into the rules whose `correlate:` block is
    /// the same.
    pub fn make_windows_durable(&self, saved: crate::correlate::durable::Saved) {
        self.correlator().make_durable(saved);
    }

    /// `--event-time-field`: the payload path of events' time for the
    /// correlation windows (`None`: the first of `ts`, `timestamp`,
    /// `@timestamp` that parses).
    pub fn set_event_time_field(&self, path: Option<&str>) {
        self.correlator().set_time_field(path);
    }

    /// `--max-groups`: the group bound of correlation rules that set none.
    pub fn set_max_groups(&self, max_groups: Option<usize>) {
        self.correlator().set_max_groups(max_groups);
    }

    /// The correlation windows' changes since the last call (empty unless
    /// durable), to be committed with the tags of the events counted.
    pub fn take_window_delta(&self) -> crate::correlate::durable::WindowDelta {
        let snap = self.snapshot.load();
        let mut correlator = self.correlator();
        correlator.sync(&snap.correlations);
        correlator.take_delta()
    }

    pub fn correlation_stats(&self) -> crate::correlate::stage::CorrelationStats {
        self.correlator().stats()
    }

    fn correlator(&self) -> std::sync::MutexGuard<'_, Correlator> {
        self.correlator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tags one event against the snapshot current when it starts, then
    /// counts it in the correlation rules' windows (events are counted in
    /// the order this is called).
    pub fn tag_event(&self, event: &TaggerEvent, out: &mut Vec<Tag>) -> EvalStats {
        let snap = self.snapshot.load();
        let from = out.len();
        let stats = snap.tag_event(event, &self.config, Evaluation::Indexed, out);
        if !snap.correlations.is_empty() {
            let mut correlator = self.correlator();
            correlator.sync(&snap.correlations);
            let mut completed = Vec::new();
            let created_at = now_timestamp();
            let cx = crate::correlate::stage::Context {
                states: &snap.states,
                now: now_unix(),
                config: &self.config,
                created_at: &created_at,
            };
            correlator.observe(event, &out[from..], &cx, &mut completed);
            out.append(&mut completed);
        }
        stats
    }
}
