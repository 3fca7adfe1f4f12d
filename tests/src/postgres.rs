//! The PostgreSQL server the tests use, and databases of their own on it.
//!
//! The server comes from `SIGHOST_TEST_POSTGRES` (default: the local one,
//! user `postgres`, trust auth). A test that cannot reach it fails and says
//! how to start it: it never passes without a server.

use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn base_url() -> String {
    std::env::var("SIGHOST_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("SIGHOST_TEST_POSTGRES must be a postgres:// URL, not {url:?}"));
    let server = rest.split_once('/').map_or(rest, |(server, _)| server);
    format!("{scheme}://{server}/{database}{query}")
}

/// A maintenance connection, or a failed test that says how to fix it.
pub fn admin() -> ::postgres::Client {
    let url = base_url();
    ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {url} ({e}); these tests need a server: start it \
             (./scripts/test.sh does, or pg_ctlcluster <version> main start) or point \
             SIGHOST_TEST_POSTGRES at one"
        )
    })
}

/// A database of its own — `<prefix>_<process id>_<counter>`, so parallel
/// tests and runs never share one — dropped when it goes out of scope.
#[derive(Debug)]
pub struct FreshDatabase {
    pub name: String,
    pub url: String,
}

impl FreshDatabase {
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = admin();
        // Left over by an earlier run that had the same process id.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop a leftover database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create the database {name}: {e}"));
        let url = with_database(&base_url(), &name);
        Self { name, url }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
