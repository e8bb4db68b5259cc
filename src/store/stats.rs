//! The query planner's statistics of `ttp_tag`, gathered by the writer as
//! the table grows.

use rusqlite::Connection;
use std::path::Path;

/// Keeps the query planner's statistics of `ttp_tag` current: without
/// them SQLite picks the technique index for "one attacker's tags of one
/// technique" and reads every tag of that technique. `ANALYZE` (sampling
/// 1,000 rows per index, about half a second at a million tags) runs when
/// the table first holds 10,000 rows and again each time it has doubled,
/// between two transactions of the writer.
pub(super) struct PlannerStats {
    /// The table followed: `ttp_tag` in DECNET's database, the live
    /// partition in our own file.
    table: String,
    /// The highest rowid when the statistics were last gathered.
    analysed_at: i64,
}

impl PlannerStats {
    const FIRST: i64 = 10_000;

    pub(super) fn new(conn: &Connection, table: &str) -> PlannerStats {
        let mut stats = PlannerStats {
            table: String::new(),
            analysed_at: 0,
        };
        stats.follow(conn, table);
        stats
    }

    /// The table followed.
    pub(super) fn table(&self) -> &str {
        &self.table
    }

    /// Follows another table (a new live partition).
    pub(super) fn follow(&mut self, conn: &Connection, table: &str) {
        self.table = table.to_string();
        let has_stats = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            > 0
            && conn
                .query_row(
                    "SELECT count(*) FROM sqlite_stat1 WHERE tbl = ?1",
                    [table],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                > 0;
        self.analysed_at = if has_stats { self.top(conn) } else { 0 };
    }

    fn top(&self, conn: &Connection) -> i64 {
        conn.query_row(
            &format!("SELECT COALESCE(max(rowid), 0) FROM {}", self.table),
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    }

    pub(super) fn refresh(&mut self, conn: &Connection, path: &Path) {
        let top = self.top(conn);
        if top < Self::FIRST || top < self.analysed_at.saturating_mul(2) {
            return;
        }
        let started = std::time::Instant::now();
        match conn.execute_batch(&format!(
            "PRAGMA analysis_limit = 1000; ANALYZE {};",
            self.table
        )) {
            Ok(()) => {
                self.analysed_at = top;
                tracing::info!(db = %path.display(), table = %self.table, rows = top, ms = started.elapsed().as_millis() as u64, "query planner statistics refreshed");
            }
            // Busy or full: the next commit tries again.
            Err(e) => {
                tracing::warn!(db = %path.display(), "could not refresh the query planner statistics: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn planner_statistics_come_at_10k_rows_and_again_at_each_doubling() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("p.db");
        let conn = super::super::open(&path, &StoreOptions::default()).unwrap();
        let fill = |from: i64, to: i64| {
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
                 INSERT INTO ttp_tag_p000001 (uuid, source_kind, source_id, attacker_uuid, tactic, \
                 technique_id, confidence, rule_id, rule_version, evidence, attack_release, created_at) \
                 SELECT 'u' || i, 'k', 's' || i, 'a' || (i % 499), 'TA0001', 'T' || (1100 + i % 20), \
                 0.5, 'R', 1, '{}', \
                 'v', '2026-01-01 00:00:00.000000' FROM n",
                [from, to],
            )
            .unwrap();
        };
        let stats = || -> i64 {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let mut planner = PlannerStats::new(&conn, "ttp_tag_p000001");
        fill(1, 9_000);
        planner.refresh(&conn, &path);
        assert_eq!(stats(), 0, "too few rows to be worth it");
        fill(9_001, 12_000);
        planner.refresh(&conn, &path);
        assert_eq!(stats(), 1);
        assert_eq!(planner.analysed_at, 12_000);
        fill(12_001, 20_000);
        planner.refresh(&conn, &path);
        assert_eq!(planner.analysed_at, 12_000, "not doubled yet");
        fill(20_001, 24_000);
        planner.refresh(&conn, &path);
        assert_eq!(planner.analysed_at, 24_000);
        // A new writer on an analysed file starts from where it is.
        assert_eq!(
            PlannerStats::new(&conn, "ttp_tag_p000001").analysed_at,
            24_000
        );
        // The plan for one attacker's newest tags of a common technique
        // uses the attacker index (in time order), not the technique's.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT uuid FROM ttp_tag WHERE attacker_uuid = 'a1' \
                 AND technique_id = 'T1110' ORDER BY created_at DESC LIMIT 50",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("_attacker_created"), "{plan}");
    }
}
