//! Group commit of single-signal emits: requests that arrive while a
//! transaction is being written wait for the next one together, so a busy
//! API writes one transaction per group instead of one per request.
//!
//! One thread takes whatever is queued (up to [`MAX_GROUP`]) and emits it as
//! one batch; each request is answered after the commit with its own result
//! (created or existing). Nothing waits for company: an idle API writes a
//! lone request at once, so grouping adds no latency of its own. A group
//! that fails (one member over its tenant's quota, a store error) is written
//! again member by member, so one request's error never fails another's.
//! Members are checked ([`crate::emit::Emitter::check`]) before they join.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use chrono::{DateTime, Utc};

use crate::Sighost;
use crate::emit::{EmitError, Targeted};
use crate::store::{Emitted, NewSignal};

/// The most signals one group writes.
pub const MAX_GROUP: usize = 256;

type Answer = tokio::sync::oneshot::Sender<Result<Emitted, EmitError>>;

/// The queue into the committing thread; the thread ends when this is
/// dropped.
#[derive(Debug)]
pub struct GroupCommit {
    queue: std::sync::Mutex<Sender<(NewSignal, Answer)>>,
    written: Arc<Written>,
}

/// What the committing thread has written so far.
#[derive(Debug, Default)]
pub struct Written {
    /// Groups (one transaction each, unless a group failed).
    pub groups: std::sync::atomic::AtomicU64,
    /// Requests in them.
    pub members: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    pub fn start(host: Arc<Sighost>) -> std::io::Result<Self> {
        let (queue, requests) = channel();
        let written = Arc::new(Written::default());
        std::thread::Builder::new()
            .name("sighost-group-commit".into())
            .spawn({
                let written = written.clone();
                move || commit_groups(&host, &requests, &written)
            })?;
        Ok(Self {
            queue: std::sync::Mutex::new(queue),
            written,
        })
    }

    pub fn written(&self) -> &Written {
        &self.written
    }

    /// Emits `signal` in the next group; answers after its commit.
    pub async fn emit(&self, signal: NewSignal) -> Result<Emitted, EmitError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let sent = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((signal, answer));
        if sent.is_err() {
            return Err(stopped());
        }
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> EmitError {
    EmitError::Store(crate::store::StoreError::Database(
        "the group-commit thread has stopped".into(),
    ))
}

fn commit_groups(host: &Sighost, requests: &Receiver<(NewSignal, Answer)>, written: &Written) {
    // Blocks until a request comes; ends when the API is dropped.
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let now = (host.config().clock)();
        use std::sync::atomic::Ordering::Relaxed;
        written.groups.fetch_add(1, Relaxed);
        written.members.fetch_add(group.len() as u64, Relaxed);
        commit(host, group, now);
    }
}

/// Writes a group: each member is targeted and checked against its tenant's
/// caps on its own (a refusal answers that member only, and no member is
/// charged twice), then the rest go in one transaction, or, if that fails,
/// one transaction each.
fn commit(host: &Sighost, group: Vec<(NewSignal, Answer)>, now: DateTime<Utc>) {
    let emitter = host.emitter();
    let mut members = Vec::with_capacity(group.len());
    for (signal, answer) in group {
        let admitted = emitter.targeted(signal).and_then(|targeted| {
            emitter
                .check_caps([(targeted.0.tenant.as_str(), targeted.1.len())], true)
                .map(|()| targeted)
        });
        match admitted {
            Ok(targeted) => members.push((targeted, answer)),
            Err(error) => {
                let _ = answer.send(Err(error));
            }
        }
    }
    let (batch, answers): (Vec<Targeted>, Vec<Answer>) = members.into_iter().unzip();
    if batch.len() > 1 {
        match emitter.write(&batch, now) {
            Ok(emitted) => {
                for (answer, emitted) in answers.into_iter().zip(emitted) {
                    let _ = answer.send(Ok(emitted));
                }
                return;
            }
            Err(error) => {
                tracing::debug!(%error, members = batch.len(), "a group failed; writing its members one by one");
            }
        }
    }
    for (member, answer) in batch.into_iter().zip(answers) {
        let written = emitter
            .write(std::slice::from_ref(&member), now)
            .map(|mut emitted| emitted.remove(0));
        let _ = answer.send(written);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::HostConfig;
    use crate::store::{EmitStatus, TenantLimits};

    fn signal(tenant: &str, key: Option<&str>) -> NewSignal {
        NewSignal {
            tenant: tenant.into(),
            name: "group.tested".into(),
            payload: serde_json::json!({}),
            dedupe_key: key.map(str::to_owned),
            ..NewSignal::default()
        }
    }

    /// Concurrent requests share transactions, and each gets its own
    /// answer: a tenant over its rate is refused alone, a repeated dedupe
    /// key is `existing`, everyone else is `created`.
    #[test]
    fn answers_each_member_of_a_group_with_its_own_result() {
        let dir = std::env::temp_dir().join(format!("sighost-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let host = Arc::new(Sighost::open(HostConfig::new(&dir)).expect("open"));
        for tenant in ["org_fast", "org_capped"] {
            host.create_tenant(tenant, serde_json::json!({}))
                .expect("tenant");
        }
        host.set_tenant_limits(
            "org_capped",
            TenantLimits {
                max_emit_per_s: Some(5),
                ..TenantLimits::default()
            },
        )
        .expect("limits");
        let group = Arc::new(GroupCommit::start(host.clone()).expect("start"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let answers = runtime.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..200 {
                let group = group.clone();
                let signal = match i % 4 {
                    0 => signal("org_capped", None),
                    1 => signal("org_fast", Some("same-key")),
                    _ => signal("org_fast", None),
                };
                tasks.push(tokio::spawn(async move { group.emit(signal).await }));
            }
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.expect("task"));
            }
            answers
        });
        let (mut capped_ok, mut refused, mut keyed_created, mut keyed_existing, mut fast) =
            (0, 0, 0, 0, 0);
        for (i, answer) in answers.iter().enumerate() {
            match (i % 4, answer) {
                (0, Ok(_)) => capped_ok += 1,
                (0, Err(EmitError::Refused(_))) => refused += 1,
                (1, Ok(e)) if e.status == EmitStatus::Created => keyed_created += 1,
                (1, Ok(e)) if e.status == EmitStatus::Existing => keyed_existing += 1,
                (_, Ok(e)) if e.status == EmitStatus::Created => fast += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert!(
            (1..=6).contains(&capped_ok),
            "about 5 a second: {capped_ok}"
        );
        assert_eq!(capped_ok + refused, 50);
        assert_eq!((keyed_created, keyed_existing), (1, 49));
        assert_eq!(fast, 100, "nobody else held back by a refused member");
        let stored = host
            .store()
            .signals(&Default::default())
            .expect("signals")
            .len();
        assert_eq!(stored, capped_ok + 1 + 100);
        let (groups, members) = (
            group.written().groups.load(Relaxed),
            group.written().members.load(Relaxed),
        );
        assert_eq!(members, 200);
        assert!(
            groups < members,
            "requests that arrive together share a group: {groups}"
        );
        drop(group);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
