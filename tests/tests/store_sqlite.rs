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
