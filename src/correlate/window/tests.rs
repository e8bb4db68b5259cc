use super::*;
use proptest::prelude::*;

fn settings(kind: Kind, threshold: Option<Threshold>, steps: usize) -> Settings {
    Settings {
        kind,
        window_ms: 300_000,
        threshold,
        steps,
        fields: 1,
        lateness_ms: 60_000,
        max_groups: 100_000,
    }
}

/// An observation of a group.
struct Obs<'a> {
    group: &'a str,
    /// The source id's text (entered into the windows' [`Texts`] by
    /// [`Lone::observe`], which sets `o.source`).
    source: &'a str,
    /// `value_count`: the value's text (entered likewise, setting
    /// `o.value`).
    value: Option<&'a str>,
    o: Observation,
}

impl std::ops::Deref for Obs<'_> {
    type Target = Observation;
    fn deref(&self) -> &Observation {
        &self.o
    }
}

impl std::ops::DerefMut for Obs<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.o
    }
}

/// One rule's windows with their own key table, as the stage keeps
/// them.
struct Lone {
    w: Windows,
    keys: Keys,
    texts: Texts,
}

impl Lone {
    fn new(settings: Settings) -> Lone {
        Lone {
            w: Windows::new(settings),
            keys: Keys::new(1),
            texts: Texts::default(),
        }
    }

    /// Counts `o` as the stage does (its source id and value entered
    /// first), then sweeps the texts (far more often than the stage does,
    /// so that a text lost or moved by a sweep shows in the firings).
    fn observe(&mut self, o: &Obs) -> Option<Firing> {
        let id = self.keys.id(o.group);
        let obs = Observation {
            source: self.texts.sources.add(o.source),
            value: o.value.map(|v| self.texts.values.id(v)),
            ..o.o.clone()
        };
        let firing = self.w.observe(&obs, &mut self.keys, id, 0, &self.texts);
        self.keys.forget_unheld(id);
        sweep(&[&self.w], &mut self.texts);
        firing
    }

    fn restore(&mut self, name: &str, state: GroupState) {
        self.w.restore(name, state, &mut self.texts);
        self.keys = Keys::new(1);
        self.w.register(&mut self.keys, 0);
    }

    /// Counts a generated (time, value, step) in `group`: the value as
    /// text and as amount, the time as source id.
    fn observe_generated(&mut self, group: &str, &(t, v, step): &(i64, u8, u8)) -> Option<Firing> {
        let (value, source) = (v.to_string(), format!("{t}"));
        self.observe(&Obs {
            group,
            source: &source,
            value: Some(&value),
            o: Observation {
                time_ms: t,
                value: None,
                amount: f64::from(v),
                step: usize::from(step),
                source: 0,
            },
        })
    }

    fn take_changes(&mut self) -> Changes {
        self.w.take_changes(&self.texts)
    }
}

/// Sweeps `texts`, shared by `windows`: afterwards exactly the source ids
/// and values their entries hold are kept.
fn sweep(windows: &[&Windows], texts: &mut Texts) {
    let mut marks = texts.marks();
    let mut sources = std::collections::BTreeSet::<SourceId>::new();
    let mut values = std::collections::BTreeSet::<ValueId>::new();
    for w in windows {
        w.mark_texts(&mut marks);
        for g in w.slots.iter().filter(|g| g.live) {
            sources.extend(g.entries.iter().map(|e| e.source));
            if w.settings.kind == Kind::ValueCount {
                values.extend(g.entries.iter().filter_map(Entry::value));
            }
        }
    }
    texts.sweep(marks);
    assert_eq!(
        texts.sources.len(),
        sources.len(),
        "kept ids no entry holds"
    );
    assert_eq!(
        texts.values.len(),
        values.len(),
        "kept values no entry holds"
    );
}

impl std::ops::Deref for Lone {
    type Target = Windows;
    fn deref(&self) -> &Windows {
        &self.w
    }
}

impl std::ops::DerefMut for Lone {
    fn deref_mut(&mut self) -> &mut Windows {
        &mut self.w
    }
}

/// The settings of the property tests' generated windows.
fn generated_settings(
    kind: Kind,
    threshold: Option<Threshold>,
    steps: usize,
    window: i64,
    lateness: i64,
) -> Settings {
    Settings {
        kind,
        window_ms: window,
        threshold,
        steps,
        fields: 1,
        lateness_ms: lateness,
        max_groups: 10,
    }
}

fn obs(time_s: i64, group: &str, value: Option<&'static str>, step: usize) -> Obs<'static> {
    Obs {
        group: Box::leak(group.to_string().into_boxed_str()),
        source: Box::leak(format!("s{time_s}").into_boxed_str()),
        value,
        o: Observation {
            time_ms: time_s * 1000,
            value: None,
            amount: 1.0,
            step,
            source: 0,
        },
    }
}

#[test]
fn ten_failures_in_five_minutes_fire_once() {
    let mut w = Lone::new(settings(
        Kind::EventCount,
        Some(Threshold::AtLeast(10.0)),
        0,
    ));
    let mut fired = Vec::new();
    for i in 0..25 {
        if let Some(f) = w.observe(&obs(i * 20, "a1", None, 0)) {
            fired.push(f);
        }
    }
    // The 10th attempt (at 180 s) fires; the episode runs until 300 s;
    // then a new one starts and fires at its own 10th (480 s).
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(
        (fired[0].window_start_ms, fired[0].window_end_ms),
        (0, 180_000)
    );
    assert_eq!(fired[0].count, 10);
    assert_eq!(fired[0].source_ids.len(), 10);
    assert_eq!(
        (fired[1].window_start_ms, fired[1].window_end_ms),
        (300_000, 480_000)
    );
}

#[test]
fn window_edges_and_slow_attempts() {
    let mut w = Lone::new(settings(Kind::EventCount, Some(Threshold::AtLeast(3.0)), 0));
    // 0, 299 and 300 s: 0 has dropped out at 300 (exactly one window).
    assert!(w.observe(&obs(0, "g", None, 0)).is_none());
    assert!(w.observe(&obs(299, "g", None, 0)).is_none());
    assert!(w.observe(&obs(300, "g", None, 0)).is_none());
    let f = w.observe(&obs(301, "g", None, 0)).unwrap();
    assert_eq!((f.window_start_ms, f.count), (299_000, 3));
    // Other groups are counted apart.
    assert!(w.observe(&obs(301, "h", None, 0)).is_none());
}

#[test]
fn lateness_counts_late_events_in_their_place() {
    let mut w = Lone::new(settings(Kind::EventCount, Some(Threshold::AtLeast(3.0)), 0));
    assert!(w.observe(&obs(100, "g", None, 0)).is_none());
    // 70 s late: beyond the 60 s lateness, not counted.
    assert!(w.observe(&obs(30, "g", None, 0)).is_none());
    assert_eq!(w.stats.too_late, 1);
    // 50 s late: counted at its own time.
    assert!(w.observe(&obs(50, "g", None, 0)).is_none());
    let f = w.observe(&obs(101, "g", None, 0)).unwrap();
    assert_eq!((f.window_start_ms, f.window_end_ms), (50_000, 101_000));
    assert_eq!(f.source_ids, ["s50", "s100", "s101"]);
}

#[test]
fn distinct_values_sums_and_sequences() {
    let mut w = Lone::new(settings(Kind::ValueCount, Some(Threshold::AtLeast(3.0)), 0));
    assert!(w.observe(&obs(1, "a", Some("root"), 0)).is_none());
    assert!(w.observe(&obs(2, "a", Some("root"), 0)).is_none());
    assert!(w.observe(&obs(3, "a", Some("admin"), 0)).is_none());
    let f = w.observe(&obs(4, "a", Some("oracle"), 0)).unwrap();
    assert_eq!((f.distinct, f.count), (3, 4));
    assert_eq!(f.values, ["admin", "oracle", "root"]);

    let mut w = Lone::new(settings(Kind::ValueSum, Some(Threshold::Above(2.5)), 0));
    let mut o = obs(1, "a", None, 0);
    o.amount = 1.5;
    assert!(w.observe(&o).is_none());
    o.time_ms = 2000;
    assert_eq!(w.observe(&o).unwrap().sum, 3.0);

    let mut w = Lone::new(settings(Kind::Temporal, None, 3));
    assert!(w.observe(&obs(1, "s", None, 2)).is_none());
    assert!(w.observe(&obs(2, "s", None, 0)).is_none());
    assert!(w.observe(&obs(3, "s", None, 1)).is_some());

    let mut w = Lone::new(settings(Kind::TemporalOrdered, None, 3));
    assert!(w.observe(&obs(1, "s", None, 2)).is_none());
    assert!(w.observe(&obs(2, "s", None, 0)).is_none());
    assert!(w.observe(&obs(3, "s", None, 1)).is_none());
    let f = w.observe(&obs(4, "s", None, 2)).unwrap();
    assert_eq!(
        f.window_start_ms, 1000,
        "the window holds every counted step"
    );
}

#[test]
fn several_fields_count_the_fewest_distinct_of_any() {
    let mut s = settings(Kind::ValueCount, Some(Threshold::AtLeast(3.0)), 0);
    s.fields = 2;
    let pair = |u: &str, p: &str| format!("{u}{FIELD_SEPARATOR}{p}");
    let mut w = Lone::new(s);
    let mut fired = Vec::new();
    // One account, many passwords (guessing): one distinct username.
    for (i, p) in ["a", "b", "c", "d"].iter().enumerate() {
        let v = pair("root", p);
        let mut o = obs(i as i64, "g", None, 0);
        o.value = Some(&v);
        fired.extend(w.observe(&o));
    }
    assert!(fired.is_empty());
    // Many accounts, one password (spraying), in another group.
    for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
        let v = pair(u, "123456");
        let mut o = obs(i as i64, "h", None, 0);
        o.value = Some(&v);
        fired.extend(w.observe(&o));
    }
    assert!(fired.is_empty());
    // Pairs (stuffing): fires at the third distinct in both fields.
    for (i, (u, p)) in [("a", "x"), ("b", "y"), ("a", "x"), ("c", "z")]
        .iter()
        .enumerate()
    {
        let v = pair(u, p);
        let mut o = obs(i as i64, "k", None, 0);
        o.value = Some(&v);
        fired.extend(w.observe(&o));
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].distinct, 3);
    assert_eq!(fired[0].count, 4);
    assert_eq!(fired[0].values.len(), 3);
}

#[test]
fn groups_are_bounded_and_the_least_recent_goes() {
    let mut s = settings(Kind::EventCount, Some(Threshold::AtLeast(2.0)), 0);
    s.max_groups = 3;
    let mut w = Lone::new(s);
    for g in ["a", "b", "c"] {
        w.observe(&obs(1, g, None, 0));
    }
    w.observe(&obs(2, "a", None, 0)); // fires; "a" is the most recent
    w.observe(&obs(3, "d", None, 0)); // evicts "b"
    assert_eq!(w.len(), 3);
    assert_eq!(w.stats.evicted, 1);
    // "b" starts over; "c" was kept.
    assert!(w.observe(&obs(4, "b", None, 0)).is_none());
    assert_eq!(w.stats.evicted, 2, "c went to make room for b");
    for i in 0..10_000 {
        w.observe(&obs(5 + i, &format!("x{i}"), None, 0));
    }
    assert_eq!(w.len(), 3);
    assert!(w.touches.len() < 200, "{}", w.touches.len());
}

/// The reference: every firing recomputed from the whole history of
/// one group, observation by observation.
fn brute_force(s: &Settings, seq: &[(i64, u8, u8)]) -> Vec<(i64, i64, u64)> {
    let mut out = Vec::new();
    let mut counted: Vec<(i64, u8, u8)> = Vec::new();
    let mut newest: Option<i64> = None;
    let mut fired_at: Option<i64> = None;
    for &(t, v, step) in seq {
        if let Some(n) = newest {
            if t < n - s.lateness_ms {
                continue;
            }
        }
        if let Some(start) = fired_at {
            if t < start + s.window_ms {
                newest = Some(newest.map_or(t, |n| n.max(t)));
                continue;
            }
            fired_at = None;
            counted.clear();
        }
        newest = Some(newest.map_or(t, |n| n.max(t)));
        counted.push((t, v, step));
        counted.sort_by_key(|c| c.0);
        let n = newest.unwrap_or(t);
        counted.retain(|c| c.0 > n - s.window_ms);
        let holds = match s.kind {
            Kind::EventCount => s.threshold.is_some_and(|th| th.holds(counted.len() as f64)),
            Kind::ValueCount => {
                let mut vs: Vec<u8> = counted.iter().map(|c| c.1).collect();
                vs.sort_unstable();
                vs.dedup();
                s.threshold.is_some_and(|th| th.holds(vs.len() as f64))
            }
            Kind::ValueSum => s
                .threshold
                .is_some_and(|th| th.holds(counted.iter().map(|c| f64::from(c.1)).sum())),
            Kind::Temporal => (0..s.steps).all(|i| counted.iter().any(|c| c.2 as usize == i)),
            Kind::TemporalOrdered => {
                let mut next = 0;
                for c in &counted {
                    if c.2 as usize == next && next < s.steps {
                        next += 1;
                    }
                }
                next == s.steps
            }
        };
        if holds {
            let start = counted[0].0;
            out.push((start, counted[counted.len() - 1].0, counted.len() as u64));
            fired_at = Some(start);
        }
    }
    out
}

fn kinds() -> impl Strategy<Value = (Kind, Option<Threshold>, usize)> {
    prop_oneof![
        (1u8..8).prop_map(|n| (Kind::EventCount, Some(Threshold::AtLeast(f64::from(n))), 0)),
        (1u8..5).prop_map(|n| (Kind::ValueCount, Some(Threshold::AtLeast(f64::from(n))), 0)),
        (1u8..20).prop_map(|n| (Kind::ValueSum, Some(Threshold::Above(f64::from(n))), 0)),
        (1usize..4).prop_map(|n| (Kind::Temporal, None, n)),
        (1usize..4).prop_map(|n| (Kind::TemporalOrdered, None, n)),
    ]
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut w = Lone::new(settings(Kind::EventCount, Some(Threshold::AtLeast(2.0)), 0));
    let times = [
        ("g", i64::MAX),
        ("g", i64::MIN),
        ("g", 0),
        ("g", i64::MAX),
        ("g", i64::MAX),
        ("h", i64::MIN),
        ("h", i64::MIN),
        ("h", i64::MIN),
    ];
    let mut fired = 0;
    for (group, t) in times {
        let mut o = obs(0, group, None, 0);
        o.time_ms = t;
        fired += usize::from(w.observe(&o).is_some());
    }
    // No overflow; at the very ends of time the arithmetic saturates.
    assert_eq!(fired, 1);
}

#[test]
fn evictions_and_changes_are_taken_once() {
    let mut s = settings(Kind::EventCount, Some(Threshold::AtLeast(5.0)), 0);
    s.max_groups = 2;
    let mut w = Lone::new(s);
    w.observe(&obs(1, "untracked", None, 0));
    w.track_changes();
    w.observe(&obs(2, "a", None, 0));
    w.observe(&obs(3, "b", None, 0)); // evicts "untracked"
    let c = w.take_changes();
    assert_eq!(c.deletes, vec!["untracked".to_string()]);
    let names: Vec<&str> = c.upserts.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.upserts[0].1.entries.len(), 1);
    assert_eq!(w.take_changes(), Changes::default(), "taken once");
    // A group evicted after a change: only its delete is written.
    w.observe(&obs(4, "a", None, 0));
    w.observe(&obs(5, "c", None, 0)); // evicts "b"
    w.observe(&obs(6, "d", None, 0)); // evicts "a"
    let c = w.take_changes();
    assert_eq!(c.deletes, vec!["b".to_string(), "a".to_string()]);
    let mut names: Vec<&str> = c.upserts.iter().map(|u| u.0.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["c", "d"]);
    // A lower bound evicts at once.
    w.set_max_groups(1);
    assert_eq!(w.len(), 0, "room is made for one new group");
    assert_eq!(w.take_changes().deletes.len(), 2);
}

proptest! {
    /// Checkpoints taken now and then, applied to a saved copy, and
    /// restored into fresh windows at any point: the firings after the
    /// restore are those of windows that never stopped.
    #[test]
    fn restored_windows_go_on_as_if_never_stopped(
        (kind, threshold, steps) in kinds(),
        window in 1i64..50,
        lateness in 0i64..20,
        seq in prop::collection::vec((0i64..200, 0u8..6, 0u8..3), 0..60),
        cut in 0usize..60,
        every in 1usize..8,
    ) {
        let s = generated_settings(kind, threshold, steps, window, lateness);
        let observe = |w: &mut Lone, o: &(i64, u8, u8)| {
            w.observe_generated(&format!("g{}", o.1 % 3), o)
                .map(|f| (f.group, f.window_start_ms, f.window_end_ms, f.count, f.source_ids))
        };
        let cut = cut.min(seq.len());
        let mut whole = Lone::new(s);
        let expected: Vec<_> = seq.iter().map(|o| observe(&mut whole, o)).collect();
        let mut first = Lone::new(s);
        first.track_changes();
        let mut saved: std::collections::BTreeMap<String, GroupState> = Default::default();
        for (i, o) in seq[..cut].iter().enumerate() {
            observe(&mut first, o);
            if i % every == 0 || i + 1 == cut {
                let c = first.take_changes();
                for d in c.deletes {
                    saved.remove(&d);
                }
                saved.extend(c.upserts);
            }
        }
        let mut second = Lone::new(s);
        for (name, state) in saved {
            second.restore(&name, state);
        }
        let got: Vec<_> = seq[cut..].iter().map(|o| observe(&mut second, o)).collect();
        prop_assert_eq!(&got[..], &expected[cut..]);
    }

    /// Rules sharing one key table (a row per key, a column per rule)
    /// fire exactly as rules with a table each, through evictions in
    /// one rule of keys the other still holds.
    #[test]
    fn a_shared_key_table_changes_nothing(
        seq in prop::collection::vec((0i64..400, 0u8..12, 0usize..3), 0..200),
        bounds in (1usize..6, 1usize..6, 1usize..6),
    ) {
        let settings = |max_groups| Settings {
            kind: Kind::EventCount,
            window_ms: 40,
            threshold: Some(Threshold::AtLeast(2.0)),
            steps: 0,
            fields: 1,
            lateness_ms: 10,
            max_groups,
        };
        let bounds = [bounds.0, bounds.1, bounds.2];
        let mut shared: Vec<Windows> = bounds.iter().map(|&m| Windows::new(settings(m))).collect();
        let mut keys = Keys::new(3);
        let mut apart: Vec<Lone> = bounds.iter().map(|&m| Lone::new(settings(m))).collect();
        let mut texts = Texts::default();
        for &(t, g, rule) in &seq {
            let group = format!("g{g}");
            let text = format!("s{t}");
            let source = texts.sources.add(&text);
            let o = Observation { time_ms: t, value: None, amount: 0.0, step: 0, source };
            let id = keys.id(&group);
            let got = shared[rule].observe(&o, &mut keys, id, rule, &texts);
            keys.forget_unheld(id);
            sweep(&shared.iter().collect::<Vec<_>>(), &mut texts);
            let want = apart[rule].observe(&Obs { group: &group, source: &text, value: None, o: o.clone() });
            prop_assert_eq!(got, want);
        }
        for (w, lone) in shared.iter().zip(&apart) {
            prop_assert_eq!(w.len(), lone.len());
        }
        // Every key held is held by some rule's live group, and no
        // more keys, in the shared table and in each rule's own.
        let live = |w: &Windows| -> std::collections::BTreeSet<String> {
            w.slots.iter().filter(|g| g.live).map(|g| g.name.to_string()).collect()
        };
        let held: std::collections::BTreeSet<String> = shared.iter().flat_map(live).collect();
        prop_assert_eq!(keys.len(), held.len());
        for lone in &apart {
            prop_assert_eq!(lone.keys.len(), live(&lone.w).len());
        }
    }

    /// Windows large enough to keep their distinct values count them
    /// as a recount of every entry does, over one field or two.
    #[test]
    fn kept_distinct_values_equal_a_recount(
        steps in prop::collection::vec((0i64..4, 0i64..30, any::<u8>(), any::<u8>()), 0..400),
        window in 20i64..200,
        lateness in 0i64..40,
        (domain, threshold) in (2u8..40).prop_flat_map(|d| (Just(d), 1..=d)),
        two_fields in any::<bool>(),
    ) {
        // Times mostly rising (some late), values drawn from `domain`,
        // the threshold within reach.
        let mut clock = 0;
        let seq: Vec<(i64, (u8, u8))> = steps
            .iter()
            .map(|&(dt, late, a, b)| {
                clock += dt;
                (clock - late, (a % domain, b % domain))
            })
            .collect();
        let fields = if two_fields { 2 } else { 1 };
        let s = Settings {
            kind: Kind::ValueCount,
            window_ms: window,
            threshold: Some(Threshold::AtLeast(f64::from(threshold))),
            steps: 0,
            fields,
            lateness_ms: lateness,
            max_groups: 10,
        };
        let text = |(a, b): (u8, u8)| if two_fields {
            format!("u{a}{FIELD_SEPARATOR}p{b}")
        } else {
            format!("v{a}")
        };
        let mut w = Lone::new(s);
        let mut got = Vec::new();
        for &(t, v) in &seq {
            let value = text(v);
            let o = Obs {
                group: "g",
                source: "s",
                value: Some(&value),
                o: Observation { time_ms: t, value: None, amount: 0.0, step: 0, source: 0 },
            };
            if let Some(f) = w.observe(&o) {
                got.push((f.window_start_ms, f.window_end_ms, f.count, f.distinct, f.values));
            }
        }
        // The recount: every counted entry, each time.
        let mut want = Vec::new();
        let mut counted: Vec<(i64, (u8, u8))> = Vec::new();
        let (mut newest, mut fired_at): (Option<i64>, Option<i64>) = (None, None);
        for &(t, v) in &seq {
            if newest.is_some_and(|n| t < n - lateness) {
                continue;
            }
            newest = Some(newest.map_or(t, |n| n.max(t)));
            if let Some(start) = fired_at {
                if t < start + window {
                    continue;
                }
                fired_at = None;
                counted.clear();
            }
            counted.push((t, v));
            counted.sort_by_key(|c| c.0);
            let n = newest.unwrap_or(t);
            counted.retain(|c| c.0 > n - window);
            let mut values: Vec<String> = counted.iter().map(|c| text(c.1)).collect();
            values.sort_unstable();
            values.dedup();
            let distinct = (0..fields)
                .map(|k| {
                    let mut col: Vec<&str> = values
                        .iter()
                        .map(|v| v.split(FIELD_SEPARATOR).nth(k).unwrap_or(""))
                        .collect();
                    col.sort_unstable();
                    col.dedup();
                    col.len()
                })
                .min()
                .unwrap_or(0);
            if distinct >= usize::from(threshold) {
                let start = counted[0].0;
                values.truncate(EVIDENCE_CAP);
                want.push((start, counted[counted.len() - 1].0, counted.len() as u64, distinct as u64, values));
                fired_at = Some(start);
            }
        }
        prop_assert_eq!(got, want);
    }

    /// Temporal windows large enough to keep their step counts fire
    /// as the recount does (two steps rare, so windows grow and rare steps
    /// leave them uncounted).
    #[test]
    fn kept_steps_equal_a_recount(
        ordered in any::<bool>(),
        steps in prop::collection::vec((0i64..4, 0i64..30, any::<u8>()), 0..400),
        window in 20i64..200,
        lateness in 0i64..40,
    ) {
        let s = Settings {
            kind: if ordered { Kind::TemporalOrdered } else { Kind::Temporal },
            window_ms: window,
            threshold: None,
            steps: 3,
            fields: 1,
            lateness_ms: lateness,
            max_groups: 10,
        };
        let mut clock = 0;
        let seq: Vec<(i64, u8, u8)> = steps
            .iter()
            .map(|&(dt, late, b)| {
                clock += dt;
                let step = match b % 40 {
                    0 => 0,
                    1 => 2,
                    _ => 1,
                };
                (clock - late, 0, step)
            })
            .collect();
        let mut w = Lone::new(s);
        let mut got = Vec::new();
        for &(t, _, step) in &seq {
            let o = Obs {
                group: "g",
                source: "s",
                value: None,
                o: Observation { time_ms: t, value: None, amount: 0.0, step: usize::from(step), source: 0 },
            };
            if let Some(f) = w.observe(&o) {
                got.push((f.window_start_ms, f.window_end_ms, f.count));
            }
        }
        prop_assert_eq!(got, brute_force(&s, &seq));
    }

    #[test]
    fn windows_equal_a_brute_force_recount(
        (kind, threshold, steps) in kinds(),
        window in 1i64..50,
        lateness in 0i64..20,
        seq in prop::collection::vec((0i64..200, 0u8..6, 0u8..3), 0..60),
    ) {
        let s = generated_settings(kind, threshold, steps, window, lateness);
        let mut w = Lone::new(s);
        let mut got = Vec::new();
        for o in &seq {
            if let Some(f) = w.observe_generated("g", o) {
                got.push((f.window_start_ms, f.window_end_ms, f.count));
            }
        }
        prop_assert_eq!(got, brute_force(&s, &seq));
    }
}
