//! The handlers directory: every `<name>.wasm` in it, with its optional
//! `<name>.toml` manifest, is a handler; a [`Watcher`] keeps the registry in
//! step with it while the host runs.
//!
//! - A new or changed file is compiled on a thread of its own, never on a
//!   delivery's, and swapped into the registry in one step. A delivery runs on
//!   the `Arc<Handler>` it looked up, so one in flight finishes on the old
//!   code and the next records the new digest.
//! - Files load side by side and none waits for another: a large component
//!   that takes half a minute to compile, or a hostile one whose start
//!   function waits (cut off at the handler's wall-clock limit), delays no
//!   other file; the watcher keeps scanning while they load. Loading threads
//!   (and the compiler's) run at a lower CPU priority than deliveries, so a
//!   compile takes the cores only when deliveries leave them idle.
//! - A file that does not load leaves the previous version running; the
//!   error is logged, kept in [`HandlerFiles`] and registered in the store
//!   for `sighost handlers`.
//! - A removed file removes its handler from this host and from its
//!   registrations: emits create no new deliveries for it unless another
//!   host runs it, and workers snooze its pending ones until it is back (see
//!   `worker.rs`), so none is lost.
//! - Once the host runs, every change rewrites its registrations in the
//!   store (`HandlerLoader::register`); a write that fails is tried again
//!   at the next scan.
//!
//! The watcher polls instead of subscribing to file-system events (the
//! `notify` crate): a half-written file must be seen unchanged on two scans
//! before it is loaded, which takes periodic looks anyway; polling behaves the
//! same on every file system, including bind mounts and network shares where
//! events go missing; and a directory listing plus a few `stat`s every half
//! second costs nothing beside a handler compile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::registry::HandlerRegistry;
use crate::sandbox::{LoadError, Sandbox};
use crate::store::Store;
use crate::threads::ThreadGroup;
use crate::wake::Wake;

/// How often the watcher looks at the directory. A change is loaded after two
/// scans that agree, so within about a second.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(500);

/// What one file looks like on disk, without reading it. A writer changes it
/// with every write, so two equal stamps a scan apart mean the writer is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// A file renamed over the old one is a new inode even when a deploy tool
    /// kept its size and modification time.
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }
}

/// A handler file and its manifest as they were when last looked at: a
/// change to either means the handler must be loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    wasm: Stamp,
    manifest: Option<Stamp>,
}

impl Fingerprint {
    /// `None` when the module is not there.
    fn of(wasm: &Path) -> Option<Self> {
        Some(Self {
            wasm: Stamp::of(wasm)?,
            manifest: Stamp::of(&wasm.with_extension("toml")),
        })
    }
}

/// What became of one handler file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    pub file: PathBuf,
    /// The handler name the file loads as: its stem.
    pub name: String,
    /// The digest of the version running now, if one is.
    pub digest: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Why the file as it is now does not load; the version in `digest`, if
    /// any, keeps running meanwhile. `None` once a load succeeds.
    pub error: Option<String>,
    /// The file as it was when last loaded or tried: the watcher tries again
    /// only when it changes, since the same bytes fail the same way.
    fingerprint: Option<Fingerprint>,
}

/// Every handler file this host has loaded or tried, by path: what operators
/// see in `sighost handlers`, and what the watcher compares the directory to.
#[derive(Debug, Default)]
pub struct HandlerFiles {
    files: Mutex<BTreeMap<PathBuf, FileStatus>>,
}

impl HandlerFiles {
    pub fn all(&self) -> Vec<FileStatus> {
        self.lock().values().cloned().collect()
    }

    pub fn get(&self, file: &Path) -> Option<FileStatus> {
        self.lock().get(file).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, FileStatus>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fingerprint(&self, file: &Path) -> Option<Fingerprint> {
        self.lock().get(file).and_then(|s| s.fingerprint)
    }

    /// The known files that live in `dir`.
    fn in_dir(&self, dir: &Path) -> Vec<PathBuf> {
        self.lock()
            .keys()
            .filter(|file| file.parent() == Some(dir))
            .cloned()
            .collect()
    }

    /// The entry for `file`, created for a file seen for the first time.
    fn update(&self, file: &Path, change: impl FnOnce(&mut FileStatus)) {
        let mut files = self.lock();
        let status = files.entry(file.to_owned()).or_insert_with(|| FileStatus {
            file: file.to_owned(),
            name: file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            digest: None,
            loaded_at: None,
            error: None,
            fingerprint: None,
        });
        change(status);
    }

    fn forget(&self, file: &Path) -> Option<FileStatus> {
        self.lock().remove(file)
    }
}

/// Loads handler files into the registry and keeps [`HandlerFiles`] up to
/// date: the one way handlers get loaded, at start (`Sighost::load_handler`,
/// `Sighost::load_handlers_dir`) and by the watcher, whose thread holds a
/// clone.
#[derive(Debug, Clone)]
pub(crate) struct HandlerLoader {
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<HandlerRegistry>,
    pub(crate) files: Arc<HandlerFiles>,
    /// The host's id once it registers its handlers in the store
    /// (`Sighost::register`); until then nothing is registered.
    pub(crate) host_id: Arc<OnceLock<String>>,
    /// Held from the snapshot of the handlers to the end of its write, so
    /// that registrations of parallel loads are written in the order they
    /// were taken; set while the last write failed (the watcher writes
    /// again at its next scan).
    pub(crate) registering: Arc<Mutex<Unregistered>>,
    pub(crate) clock: fn() -> DateTime<Utc>,
}

/// When a scan loads a file that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// At once: at start, files are taken to be complete.
    Now,
    /// Once two consecutive scans saw it the same: while it runs, the host
    /// may be looking at a file that is still being written.
    TwoScans,
}

/// What a scan does about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Nothing,
    /// Changed since the last scan: look again next time.
    Wait,
    Load,
    Unload,
}

/// `recorded`: the file when last loaded or tried; `current`: now;
/// `seen_last_scan`: what the previous scan saw, if it saw a change.
fn step(
    recorded: Option<Fingerprint>,
    current: Option<Fingerprint>,
    seen_last_scan: Option<Option<Fingerprint>>,
    settle: Settle,
) -> Step {
    if current == recorded {
        Step::Nothing
    } else if settle == Settle::TwoScans && seen_last_scan != Some(current) {
        Step::Wait
    } else if current.is_some() {
        Step::Load
    } else {
        Step::Unload
    }
}

/// The `*.wasm` files of `dir`, in name order. A missing directory holds none.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "wasm") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Whether the store lacks this host's newest registrations.
#[derive(Debug, Default)]
pub(crate) struct Unregistered(bool);

impl HandlerLoader {
    /// Replaces this host's registrations in the store with what it has
    /// now: every loaded handler, and every file that does not load (with
    /// its error). Nothing before the host registers.
    pub(crate) fn register(&self) -> Result<(), crate::store::StoreError> {
        let Some(host) = self.host_id.get() else {
            return Ok(());
        };
        let mut unregistered = self.registering.lock().unwrap_or_else(|p| p.into_inner());
        let written = self.write_registrations(host);
        unregistered.0 = written.is_err();
        written
    }

    fn write_registrations(&self, host: &str) -> Result<(), crate::store::StoreError> {
        let now = (self.clock)();
        let mut registrations = self.registry.registrations(host, now);
        for status in self.files.all() {
            let Some(error) = status.error else { continue };
            match registrations.iter_mut().find(|r| r.handler == status.name) {
                // The version loaded before keeps running.
                Some(running) => running.load_error = Some(error),
                None => registrations.push(crate::store::HandlerRegistration {
                    host: host.to_owned(),
                    handler: status.name,
                    digest: None,
                    subscriptions: Vec::new(),
                    package: None,
                    max_attempts: 0,
                    load_error: Some(error),
                    registered_at: now,
                }),
            }
        }
        self.store.register_handlers(host, &registrations)
    }

    /// [`HandlerLoader::register`] after a change, which a failure to write
    /// does not undo: it is logged, and the watcher writes them all again
    /// at its next scan ([`HandlerLoader::register_if_unregistered`]).
    fn register_change(&self) {
        if let Err(error) = self.register() {
            tracing::warn!(%error, "could not register the handlers in the store; trying again at the next scan");
        }
    }

    /// Writes the registrations again if the last write failed.
    fn register_if_unregistered(&self) {
        let unregistered = self.registering.lock().unwrap_or_else(|p| p.into_inner()).0;
        if unregistered {
            self.register_change();
        }
    }

    /// Loads one handler file and its manifest and swaps it in, replacing any
    /// handler of the same name. On failure the previous version keeps
    /// running and the error is kept in [`HandlerFiles`].
    pub(crate) fn load(&self, wasm: &Path) -> Result<(), LoadError> {
        // Taken before reading: a write during the load changes the file
        // after this, so the next scan loads it again.
        let fingerprint = Fingerprint::of(wasm);
        let handler = match self.sandbox.load_file(wasm) {
            Ok(handler) => handler,
            Err(error) => {
                if fingerprint.is_some() {
                    self.files.update(wasm, |status| {
                        status.error = Some(error.to_string());
                        status.fingerprint = fingerprint;
                    });
                    self.register_change();
                }
                return Err(error);
            }
        };
        let now = (self.clock)();
        if let Err(error) = self
            .store
            .record_handler_version(&handler.name, &handler.digest, now)
        {
            tracing::warn!(%error, handler = %handler.name, "could not record the handler version");
        }
        tracing::info!(
            handler = %handler.name, digest = %handler.digest, shape = handler.shape.describe(),
            file = %wasm.display(), "handler loaded"
        );
        let (name, digest) = (handler.name.clone(), handler.digest.clone());
        self.registry.insert(handler);
        // Deliveries that waited while no handler of this name was loaded
        // need not wait out their snooze.
        match self.store.resume_handler(&name, now) {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(handler = %name, resumed, "pending deliveries resumed"),
            Err(error) => {
                tracing::warn!(%error, handler = %name, "could not resume pending deliveries")
            }
        }
        self.files.update(wasm, |status| {
            status.digest = Some(digest);
            status.loaded_at = Some(now);
            status.error = None;
            status.fingerprint = fingerprint;
        });
        self.register_change();
        Ok(())
    }

    /// Takes the handler of a removed file out of the registry. Its pending
    /// deliveries stay in the store and run when a handler of that name is
    /// back.
    fn unload(&self, wasm: &Path) {
        let Some(status) = self.files.forget(wasm) else {
            return;
        };
        if status.digest.is_some() {
            self.registry.remove(&status.name);
            tracing::info!(
                handler = %status.name, file = %wasm.display(),
                "handler file removed: no new deliveries from this host; pending ones wait \
                 until it is back (or run on another host that has it)"
            );
        }
        self.register_change();
    }

    /// Loads every `*.wasm` of `dir` that is new or changed since this loader
    /// last saw it, side by side, and unloads those whose file is gone.
    /// Returns the files that failed to load, each error naming its file.
    pub(crate) fn load_dir(&self, dir: &Path) -> std::io::Result<Vec<LoadError>> {
        let to_load = self.scan(dir, &mut BTreeMap::new(), Settle::Now, &|_| false)?;
        let threads = to_load_threads(to_load.len());
        let queue = Mutex::new(to_load.into_iter());
        let errors = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    crate::priority::lower_this_thread();
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some(file) = next else { break };
                        if let Err(error) = self.load(&file) {
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push(error);
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
        errors.sort_by_key(|e| e.to_string());
        Ok(errors)
    }

    /// One look at `dir`: unloads the handlers of removed files and returns
    /// the files to load. `unsettled` carries the changes seen by the
    /// previous scan, for [`Settle::TwoScans`]; files for which `loading`
    /// is true are being loaded and are left alone until that ends.
    fn scan(
        &self,
        dir: &Path,
        unsettled: &mut BTreeMap<PathBuf, Option<Fingerprint>>,
        settle: Settle,
        loading: &dyn Fn(&Path) -> bool,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut files = wasm_files(dir)?;
        for known in self.files.in_dir(dir) {
            if !files.contains(&known) {
                files.push(known);
            }
        }
        let mut to_load = Vec::new();
        let mut seen_now = BTreeMap::new();
        for file in files {
            if loading(&file) {
                continue;
            }
            let current = Fingerprint::of(&file);
            let seen_last_scan = unsettled.get(&file).copied();
            match step(
                self.files.fingerprint(&file),
                current,
                seen_last_scan,
                settle,
            ) {
                Step::Nothing => {}
                Step::Wait => {
                    seen_now.insert(file, current);
                }
                Step::Load => to_load.push(file),
                Step::Unload => self.unload(&file),
            }
        }
        *unsettled = seen_now;
        Ok(to_load)
    }
}

/// Threads that load `files` files side by side: enough that a few slow or
/// hostile files cannot hold the others back, few enough that a directory
/// of a thousand does not start a thousand compiles at once.
fn to_load_threads(files: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    files.min((2 * cores).max(8))
}

/// Watches a handlers directory on a thread of its own until stopped.
#[derive(Debug)]
pub struct Watcher(ThreadGroup);

impl Watcher {
    /// Starts watching `dir`, every `interval`. Load what is there first
    /// ([`HandlerLoader::load_dir`]): the watcher only loads what changes
    /// after that.
    pub(crate) fn start(
        loader: HandlerLoader,
        dir: PathBuf,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let wake = Arc::new(Wake::default());
        let mut group = ThreadGroup::new("handlers watcher", wake.clone());
        let stopping = group.stopping();
        group.spawn("sighost-reload", move || {
            watch(&loader, &dir, interval, &stopping, &wake);
        })?;
        Ok(Self(group))
    }

    /// Stops watching; returns once a load under way has finished.
    pub fn stop(self) {
        self.0.shutdown();
    }
}

fn watch(
    loader: &HandlerLoader,
    dir: &Path,
    interval: Duration,
    stopping: &AtomicBool,
    wake: &Wake,
) {
    let mut unsettled = BTreeMap::new();
    // Loads under way, each on a thread of its own: the scans go on while a
    // file compiles or its start function runs.
    let mut loading: BTreeMap<PathBuf, JoinHandle<()>> = BTreeMap::new();
    // A directory that cannot be read is reported once, not twice a second.
    let mut unreadable: Option<String> = None;
    while !stopping.load(Ordering::SeqCst) {
        loader.register_if_unregistered();
        loading.retain(|_, load| !load.is_finished());
        let busy = |file: &Path| loading.contains_key(file);
        match loader.scan(dir, &mut unsettled, Settle::TwoScans, &busy) {
            Ok(to_load) => {
                unreadable = None;
                for file in to_load {
                    match start_load(loader, &file) {
                        Ok(load) => {
                            loading.insert(file, load);
                        }
                        Err(error) => {
                            tracing::warn!(file = %file.display(), %error, "cannot start a thread to load it; trying again")
                        }
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                if unreadable.as_ref() != Some(&message) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot read the handlers directory; keeping the handlers loaded");
                }
                unreadable = Some(message);
            }
        }
        wake.wait(interval);
    }
    // Each load is bounded: compiling, and the start function within the
    // handler's wall-clock limit.
    for (_, load) in loading {
        let _ = load.join();
    }
}

/// Loads `file` on a thread of its own, logging a failure.
fn start_load(loader: &HandlerLoader, file: &Path) -> std::io::Result<JoinHandle<()>> {
    let (loader, file) = (loader.clone(), file.to_owned());
    std::thread::Builder::new()
        .name("sighost-load".into())
        .spawn(move || {
            crate::priority::lower_this_thread();
            if let Err(error) = loader.load(&file) {
                tracing::error!(%error, "handler not loaded; its previous version, if any, keeps running");
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(len: u64) -> Option<Fingerprint> {
        Some(Fingerprint {
            wasm: Stamp {
                len,
                modified: None,
                #[cfg(unix)]
                inode: 1,
            },
            manifest: None,
        })
    }

    #[test]
    fn an_unchanged_file_is_left_alone() {
        assert_eq!(
            step(print(1), print(1), None, Settle::TwoScans),
            Step::Nothing
        );
        assert_eq!(step(None, None, None, Settle::Now), Step::Nothing);
    }

    #[test]
    fn a_change_is_loaded_once_two_scans_agree() {
        assert_eq!(step(print(1), print(2), None, Settle::TwoScans), Step::Wait);
        assert_eq!(
            step(print(1), print(3), Some(print(2)), Settle::TwoScans),
            Step::Wait,
            "still being written"
        );
        assert_eq!(
            step(print(1), print(3), Some(print(3)), Settle::TwoScans),
            Step::Load
        );
        assert_eq!(
            step(None, print(3), Some(print(3)), Settle::TwoScans),
            Step::Load
        );
    }

    #[test]
    fn at_start_a_file_is_loaded_at_once() {
        assert_eq!(step(None, print(3), None, Settle::Now), Step::Load);
    }

    #[test]
    fn a_file_gone_on_two_scans_is_unloaded() {
        assert_eq!(step(print(1), None, None, Settle::TwoScans), Step::Wait);
        assert_eq!(
            step(print(1), None, Some(None), Settle::TwoScans),
            Step::Unload
        );
        assert_eq!(
            step(print(1), print(1), Some(None), Settle::TwoScans),
            Step::Nothing,
            "back before the second scan: replaced by remove-then-copy"
        );
    }

    #[test]
    fn a_missing_directory_holds_no_handlers() {
        let missing =
            std::env::temp_dir().join(format!("sighost-no-such-dir-{}", std::process::id()));
        assert!(wasm_files(&missing).expect("not an error").is_empty());
    }
}
