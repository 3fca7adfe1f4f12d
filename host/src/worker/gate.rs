//! The CPU gate: which invocation runs next on this process's worker threads.
//!
//! Invocations are tokio tasks. Left to itself, tokio polls them in the order
//! they became ready, so a tenant whose deliveries each cost 50× another's
//! would take 50× the CPU. The gate lets at most `threads` invocations be
//! polled at once. Whenever one stops (it finished, or it suspended in a host
//! call), the gate hands the thread to the waiting invocation whose tenant
//! has used the least busy time per unit of weight. This is start-time fair
//! queueing, the rule the claim applies across the cluster (`fair.rs`), here
//! applied to CPU.
//!
//! Busy time is the time an invocation spent being polled: CPU on a worker
//! thread, not time asleep in a host call. It is also what the claim is
//! charged with ([`Gated::busy`]). A tenant with nothing waiting banks no
//! credit: when it comes back, it starts at the gate's clock (the virtual
//! time of the last invocation let through).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Threads no invocation holds or has been granted.
    free: usize,
    /// The virtual time of the last invocation let through.
    clock: i64,
    tenants: HashMap<String, Tenant>,
    /// Invocations waiting: ticket → waker (per tenant in `Tenant::waiting`).
    wakers: HashMap<u64, Waker>,
    /// Tickets granted a thread and not yet polled.
    granted: std::collections::HashSet<u64>,
    next_ticket: u64,
}

#[derive(Debug, Default)]
struct Tenant {
    /// Busy nanoseconds divided by weight.
    vtime: i64,
    waiting: VecDeque<u64>,
    /// Invocations of this tenant holding or granted a thread.
    running: usize,
}

impl Gate {
    pub fn new(threads: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: threads.max(1),
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters and queues, consistent between
        // statements; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `future` through the gate on behalf of `tenant`.
    pub fn run<F: Future>(self: &Arc<Self>, tenant: &str, weight: u32, future: F) -> Gated<F> {
        Gated {
            gate: self.clone(),
            tenant: tenant.to_owned(),
            weight: weight.max(1),
            ticket: None,
            busy: Duration::ZERO,
            inner: Box::pin(future),
        }
    }
}

impl State {
    fn tenant(&mut self, tenant: &str) -> &mut Tenant {
        let clock = self.clock;
        let entry = self.tenants.entry(tenant.to_owned()).or_default();
        if entry.waiting.is_empty() && entry.running == 0 {
            entry.vtime = entry.vtime.max(clock); // no credit banked while away
        }
        entry
    }

    /// A thread for `ticket` of `tenant`, now or when one is handed over.
    fn acquire(&mut self, tenant: &str, ticket: &mut Option<u64>, waker: &Waker) -> bool {
        if let Some(held) = *ticket {
            if self.granted.remove(&held) {
                *ticket = None;
                return true;
            }
            self.wakers.insert(held, waker.clone());
            return false;
        }
        if self.free > 0 {
            self.free -= 1;
            self.tenant(tenant).running += 1;
            return true;
        }
        let id = self.next_ticket;
        self.next_ticket += 1;
        self.tenant(tenant).waiting.push_back(id);
        self.wakers.insert(id, waker.clone());
        *ticket = Some(id);
        false
    }

    /// A thread given back by `tenant` after `busy`, charged at `weight`;
    /// handed to the waiting invocation of the tenant furthest behind.
    fn release(&mut self, tenant: &str, weight: u32, busy: Duration) {
        if let Some(entry) = self.tenants.get_mut(tenant) {
            let busy = i64::try_from(busy.as_nanos()).unwrap_or(i64::MAX);
            entry.vtime = entry.vtime.saturating_add(busy / i64::from(weight));
            entry.running = entry.running.saturating_sub(1);
        }
        self.hand_over();
        self.forget_idle();
    }

    fn hand_over(&mut self) {
        let next = self
            .tenants
            .iter()
            .filter(|(_, t)| !t.waiting.is_empty())
            .min_by_key(|(name, t)| (t.vtime, name.as_str()))
            .map(|(name, _)| name.clone());
        let Some(name) = next else {
            self.free += 1;
            return;
        };
        let Some(entry) = self.tenants.get_mut(&name) else {
            self.free += 1;
            return;
        };
        let Some(ticket) = entry.waiting.pop_front() else {
            self.free += 1;
            return;
        };
        entry.running += 1;
        self.clock = self.clock.max(entry.vtime);
        self.granted.insert(ticket);
        if let Some(waker) = self.wakers.remove(&ticket) {
            waker.wake();
        }
    }

    /// Drops tenants with nothing here and no debt beyond the clock: they
    /// would start at the clock anyway.
    fn forget_idle(&mut self) {
        let clock = self.clock;
        if self.tenants.len() > 64 {
            self.tenants
                .retain(|_, t| !t.waiting.is_empty() || t.running > 0 || t.vtime > clock);
        }
    }

    /// An invocation dropped while it waited or before it used its grant.
    fn abandon(&mut self, tenant: &str, ticket: u64) {
        self.wakers.remove(&ticket);
        if self.granted.remove(&ticket) {
            if let Some(entry) = self.tenants.get_mut(tenant) {
                entry.running = entry.running.saturating_sub(1);
            }
            self.hand_over();
        } else if let Some(entry) = self.tenants.get_mut(tenant) {
            entry.waiting.retain(|t| *t != ticket);
        }
    }
}

/// A future that runs only while the gate lets it, measuring its busy time.
pub(crate) struct Gated<F> {
    gate: Arc<Gate>,
    tenant: String,
    weight: u32,
    /// Waiting for a thread (or granted one and not yet polled).
    ticket: Option<u64>,
    busy: Duration,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Gated<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this
            .gate
            .lock()
            .acquire(&this.tenant, &mut this.ticket, cx.waker())
        {
            return Poll::Pending;
        }
        // Given back however the poll ends: a panic inside it must not keep
        // a thread from every other invocation for good.
        let turn = Turn {
            gate: &this.gate,
            tenant: &this.tenant,
            weight: this.weight,
            started: Instant::now(),
            busy: &mut this.busy,
        };
        let polled = this.inner.as_mut().poll(cx);
        drop(turn);
        polled.map(|output| (output, this.busy))
    }
}

/// A thread held for one poll; released when dropped, charged the time held.
struct Turn<'a> {
    gate: &'a Gate,
    tenant: &'a str,
    weight: u32,
    started: Instant,
    /// The future's busy time so far, to add this poll's to.
    busy: &'a mut Duration,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let held = self.started.elapsed();
        *self.busy += held;
        self.gate.lock().release(self.tenant, self.weight, held);
    }
}

impl<F> Drop for Gated<F> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.gate.lock().abandon(&self.tenant, ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A waker that counts its wakes.
    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(count.clone()))), count)
    }

    #[test]
    fn the_thread_goes_to_the_tenant_furthest_behind() {
        let mut state = State {
            free: 1,
            ..State::default()
        };
        let (waker, _) = counting_waker();
        let mut a1 = None;
        assert!(state.acquire("a", &mut a1, &waker), "a free thread");
        let (mut a2, mut b1) = (None, None);
        assert!(!state.acquire("a", &mut a2, &waker));
        assert!(!state.acquire("b", &mut b1, &waker));
        // a ran 50 µs: b (nothing used yet) is further behind.
        state.release("a", 1, Duration::from_micros(50));
        assert!(state.acquire("b", &mut b1, &waker), "granted to b");
        assert!(!state.acquire("a", &mut a2, &waker), "a still waits");
        state.release("b", 1, Duration::from_micros(1));
        assert!(state.acquire("a", &mut a2, &waker), "then a");
    }

    #[test]
    fn weight_divides_the_charge() {
        let mut state = State {
            free: 1,
            ..State::default()
        };
        let (waker, _) = counting_waker();
        let mut t = None;
        assert!(state.acquire("heavy", &mut t, &waker));
        state.release("heavy", 4, Duration::from_nanos(4_000));
        assert!(state.acquire("light", &mut t, &waker));
        state.release("light", 1, Duration::from_nanos(2_000));
        assert_eq!(state.tenants["heavy"].vtime, 1_000);
        assert_eq!(state.tenants["light"].vtime, 2_000);
    }

    #[test]
    fn a_tenant_coming_back_starts_at_the_clock() {
        let mut state = State {
            free: 1,
            ..State::default()
        };
        let (waker, _) = counting_waker();
        let (mut a, mut b, mut c) = (None, None, None);
        assert!(state.acquire("a", &mut a, &waker), "a runs");
        assert!(!state.acquire("b", &mut b, &waker), "b waits");
        state.release("a", 1, Duration::from_micros(500));
        assert_eq!(state.clock, 0, "b let through at 0");
        assert!(state.acquire("b", &mut b, &waker));
        assert!(!state.acquire("a", &mut a, &waker), "a waits at 500 µs");
        state.release("b", 1, Duration::from_micros(800));
        assert_eq!(state.clock, 500_000, "a let through at 500 µs");
        assert!(state.acquire("a", &mut a, &waker));
        // c arrives fresh: it starts at the clock, not at 0.
        assert!(!state.acquire("c", &mut c, &waker));
        assert_eq!(state.tenants["c"].vtime, 500_000);
    }

    #[test]
    fn an_abandoned_grant_passes_the_thread_on() {
        let mut state = State {
            free: 1,
            ..State::default()
        };
        let (waker, wakes) = counting_waker();
        let (mut a, mut b, mut c) = (None, None, None);
        assert!(state.acquire("a", &mut a, &waker));
        assert!(!state.acquire("b", &mut b, &waker));
        assert!(!state.acquire("c", &mut c, &waker));
        state.release("a", 1, Duration::from_micros(1));
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "b woken");
        state.abandon("b", b.take().expect("b waits"));
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "c woken in b's place");
        assert!(state.acquire("c", &mut c, &waker));
        state.release("c", 1, Duration::from_micros(1));
        assert_eq!(state.free, 1, "the thread is free again");
    }

    #[test]
    fn a_poll_that_panics_gives_its_thread_back() {
        let gate = Gate::new(1);
        let mut panicking = Box::pin(gate.run("a", 1, async { panic!("a host bug") }));
        let (waker, _) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = panicking.as_mut().poll(&mut cx);
        }));
        assert!(unwound.is_err());
        assert_eq!(gate.lock().free, 1, "the one thread is free again");
        let mut next = Box::pin(gate.run("b", 1, async { 7 }));
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready((7, _))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_gated_future_reports_its_busy_time() {
        let gate = Gate::new(1);
        let (output, busy) = gate
            .run("a", 1, async {
                std::thread::sleep(Duration::from_millis(5));
                7
            })
            .await;
        assert_eq!(output, 7);
        assert!(busy >= Duration::from_millis(5), "{busy:?}");
    }
}
