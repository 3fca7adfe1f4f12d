//! The store conformance suite (`sighost_tests::conformance`) against the
//! embedded SQLite store, each test on a fresh file of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sighost::store::Store;
use sighost::store::sqlite::{SqliteOptions, SqliteStore};
use sighost_tests::conformance::{TestDatabase, at};

/// A database file in a directory of its own under the system temp
/// directory (process id + counter, so parallel tests and runs never
/// share one), removed when the test ends.
struct SqliteDatabase {
    dir: PathBuf,
}

impl SqliteDatabase {
    fn fresh() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sighost-store-sqlite-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over by an earlier run that had the same process id.
        let _ = std::fs::remove_dir_all(&dir);
        Self { dir }
    }
}

impl TestDatabase for SqliteDatabase {
    /// Every call opens the same file again, as another process would.
    fn open(&self) -> Arc<dyn Store> {
        let options = SqliteOptions::new(self.dir.join("sighost.db"));
        Arc::new(SqliteStore::open(options, at(0)).expect("open the SQLite store"))
    }
}

impl Drop for SqliteDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

sighost_tests::store_conformance_tests!(SqliteDatabase::fresh());

/// The small soak of the retention tests, watching the file: with retention
/// on, the database stops growing once the longest retention has passed,
/// and pruning gives space back to the file system.
#[test]
fn the_database_file_levels_off_under_retention() {
    use sighost::retention::Retention;
    use sighost_tests::soak;
    let database = SqliteDatabase::fresh();
    let store = database.open();
    let file = database.dir.join("sighost.db");
    let size = || std::fs::metadata(&file).expect("the database file").len();
    soak::prepare(&*store);
    let retention = Retention::default();
    let mut sizes = Vec::new();
    let mut reclaimed = 0;
    for day in 0..12 {
        let figures = soak::run_day(&*store, &retention, day, 2_000);
        reclaimed += figures.pruned.reclaimed_bytes;
        // What the checkpointer has not copied yet is in the WAL.
        store
            .reclaim_space(0)
            .expect("a write, for the checkpoint to follow");
        std::thread::sleep(std::time::Duration::from_millis(50));
        sizes.push(size());
    }
    let kib: Vec<u64> = sizes.iter().map(|s| s / 1024).collect();
    assert!(
        reclaimed > 0,
        "pruning gave nothing back; sizes in KiB: {kib:?}"
    );
    let (week, last) = (sizes[8], sizes[11]);
    assert!(
        last <= week + week / 10,
        "still growing after the longest retention; sizes in KiB by day: {kib:?}"
    );
}

/// A process writing back to back (a busy host) and another that wants one
/// write now and then (a CLI emit), as two stores on one file: the second
/// gets its turn after the first's transaction in flight. SQLite's own busy
/// handler let the first commit dozens to thousands of transactions first,
/// or time the second out. The median is asserted: a test thread descheduled
/// between reading the count and asking for the lock is not the store's doing.
#[test]
fn a_busy_writer_lets_another_process_write_in_turn() {
    use sighost::store::{DeliveryTarget, NewSignal};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::time::Duration;

    let database = SqliteDatabase::fresh();
    let (busy, other) = (database.open(), database.open());
    busy.create_tenant("busy", serde_json::json!({}), at(0))
        .expect("tenant");
    // A transaction of some milliseconds, as a host's claims and
    // completions are.
    let batch: Vec<(NewSignal, Vec<DeliveryTarget>)> = (0..200)
        .map(|i| {
            let signal = NewSignal {
                tenant: "busy".into(),
                name: "busy.wrote".into(),
                payload: serde_json::json!({ "i": i }),
                ..NewSignal::default()
            };
            (signal, Vec::new())
        })
        .collect();
    let (committed, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                busy.emit(&batch, at(1)).expect("the busy writer's write");
                committed.fetch_add(1, Ordering::SeqCst);
            }
        });
        while committed.load(Ordering::SeqCst) < 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut passed = Vec::new();
        for i in 0..21 {
            let before = committed.load(Ordering::SeqCst);
            other
                .create_tenant(&format!("other_{i}"), serde_json::json!({}), at(0))
                .expect("the other process's write");
            passed.push(committed.load(Ordering::SeqCst) - before);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        let mut sorted = passed.clone();
        sorted.sort();
        // The transaction in flight when the write asked, and at most one
        // that began before it took its turn.
        assert!(
            sorted[sorted.len() / 2] <= 2,
            "the busy writer's transactions committed while the other waited: {passed:?}"
        );
    });
}
