//! CPU priority of the threads that compile and load handlers.
//!
//! Compiling a large component (a JavaScript runtime is 12 MB of wasm) takes
//! tens of seconds of every core wasmtime can get. Deliveries must not wait
//! for it, so loading threads, and the thread pool the compiler fans out to,
//! run at a lower priority: they get the cores deliveries leave idle.

/// The niceness loading threads run at (Linux: 0 is the default, 19 the
/// lowest priority).
#[cfg(target_os = "linux")]
const LOAD_NICENESS: i32 = 10;

/// Lowers the calling thread's CPU priority. Best effort: where it cannot,
/// the thread keeps the default priority.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // On Linux, a thread id names one thread for setpriority(2).
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), LOAD_NICENESS) {
            tracing::debug!(%error, "cannot lower a loading thread's priority");
        }
    }
}

/// Builds the global thread pool wasmtime compiles on, with its threads at
/// the loading priority. Only the first call in a process has an effect.
pub fn lower_compiler_threads() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("sighost-compile-{i}"))
        .start_handler(|_| lower_this_thread())
        .build_global();
}
