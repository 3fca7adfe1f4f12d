//! Looks for what an earlier instance left behind, then leaves its own
//! tenant's name everywhere it looked, for the next instance to (not) find:
//! a zero-initialised static, a static with an initial value, a counter, and
//! a page of linear memory grown past the instance's initial size. The host
//! instantiates afresh for every invocation, and a reused pool slot must come
//! back as new, so every run must find nothing. If it finds something, it
//! fails permanently, naming what it found.

use std::sync::atomic::{AtomicU32, Ordering};

use sighost_sdk::{Context, HandlerError, Signal, handler};

/// In `.bss`: zero when the instance is new.
static mut ZEROED: [u8; 32] = [0; 32];
/// In `.data`: its initial value when the instance is new.
static mut INITIALISED: [u8; 8] = *b"pristine";
static RUNS: AtomicU32 = AtomicU32::new(0);

const PAGE: usize = 65536;

#[handler]
fn handle_signal(_signal: Signal, tenant: String, _context: Context) -> Result<(), HandlerError> {
    let mut found = Vec::new();
    let mark = tenant.as_bytes();

    // SAFETY: one thread, and no reference to the statics is kept.
    let (zeroed, initialised) = unsafe {
        (
            &mut *std::ptr::addr_of_mut!(ZEROED),
            &mut *std::ptr::addr_of_mut!(INITIALISED),
        )
    };
    if zeroed.iter().any(|b| *b != 0) {
        found.push(format!("static {:?}", String::from_utf8_lossy(zeroed)));
    }
    if initialised != b"pristine" {
        found.push(format!(
            "initialised static {:?}",
            String::from_utf8_lossy(initialised)
        ));
    }
    let runs = RUNS.fetch_add(1, Ordering::SeqCst);
    if runs != 0 {
        found.push(format!("{runs} earlier runs counted"));
    }

    // A page of our own past what the allocator has: new pages are zero.
    let before = core::arch::wasm32::memory_grow(0, 1);
    if before == usize::MAX {
        return Err(HandlerError::transient("memory.grow refused"));
    }
    // SAFETY: the page was just added to linear memory and nothing else uses it.
    let page = unsafe { std::slice::from_raw_parts_mut((before * PAGE) as *mut u8, PAGE) };
    if let Some(at) = page.iter().position(|b| *b != 0) {
        let end = (at + 32).min(PAGE);
        found.push(format!(
            "grown memory {:?} at page {before}",
            String::from_utf8_lossy(&page[at..end])
        ));
    }

    let len = mark.len().min(zeroed.len());
    zeroed[..len].copy_from_slice(&mark[..len]);
    let len = mark.len().min(initialised.len());
    initialised[..len].copy_from_slice(&mark[..len]);
    page[..mark.len().min(PAGE)].copy_from_slice(&mark[..mark.len().min(PAGE)]);

    if found.is_empty() {
        Ok(())
    } else {
        Err(HandlerError::permanent(format!(
            "found what an earlier instance left: {}",
            found.join("; ")
        )))
    }
}
