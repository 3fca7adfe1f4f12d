//! SQL that both databases run as it is but for how they write parameters:
//! the column lists the dialects read rows in, and the statements of the
//! listings and the operator actions, each built once from its filter.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};

use super::*;
use crate::rules;

/// The columns of a [`Signal`], in the order the dialects read them.
pub const SIGNAL_COLUMNS: &str = "id, tenant, name, payload, metadata, dedupe_key, occurred_at, \
     correlation_id, causation_id, actor_type, actor_id, subject_type, subject_id, source, inserted_at";

/// The columns of a [`Delivery`], in the order the dialects read them.
pub const DELIVERY_COLUMNS: &str = "id, signal_id, tenant, handler, state, attempt, max_attempts, \
     scheduled_at, last_error, handler_digest, inserted_at, finished_at";

/// The columns of a [`Directive`], in the order the dialects read them.
pub const DIRECTIVE_COLUMNS: &str = "id, tenant, name, payload, idempotency_key, state, signal_id, \
     delivery_id, handler, scheduled_at, attempt, last_error, result, depth, inserted_at, updated_at";

/// The columns of an [`Attempt`], in the order the dialects read them.
pub const ATTEMPT_COLUMNS: &str = "delivery_id, attempt, worker, handler_digest, outcome, error, \
     started_at, duration_us, fuel, directive_count, output, finished_at, output_truncated, \
     peak_memory_bytes, refused_directives";

/// An attempt's refused directive requests as their column holds them.
pub fn refusals_column(refused: &[String]) -> String {
    serde_json::json!(refused).to_string()
}

/// The refused directive requests of an attempt's column.
pub fn refusals_from_column(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Database(format!(
            "an attempt's refused directives are not a JSON list: {e}"
        ))
    })
}

/// The columns of a [`HandlerRegistration`], in the order the dialects read
/// them (`subscriptions` is a JSON array as text).
pub const REGISTRATION_COLUMNS: &str = "host, handler, digest, subscriptions, package, \
     max_attempts, load_error, registered_at";

/// A statement's parameter, before a dialect turns it into its own type.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    /// SQL `NULL` (of a text column).
    Null,
    Int(i64),
    Time(DateTime<Utc>),
    /// A list, bound as one parameter (see [`Placeholders::in_list`]).
    Texts(Vec<String>),
    Ints(Vec<i64>),
}

/// How a dialect writes parameters into SQL.
pub trait Placeholders {
    /// The `n`th parameter, counted from 1.
    fn param(n: usize) -> String;
    /// "`column` is in the list bound as the `n`th parameter".
    fn in_list(column: &str, n: usize) -> String;
    /// What a SELECT ends with to lock its rows until the transaction ends,
    /// where the database locks rows (SQLite's writer holds the database).
    const LOCK_ROWS: &'static str;
}

/// A statement and its parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

/// A WHERE clause built from a filter's set fields, and its parameters.
struct Conditions<P> {
    clauses: Vec<String>,
    params: Vec<Param>,
    dialect: PhantomData<P>,
}

impl<P: Placeholders> Conditions<P> {
    fn new() -> Self {
        Self {
            clauses: Vec::new(),
            params: Vec::new(),
            dialect: PhantomData,
        }
    }

    /// Binds a parameter; returns its placeholder.
    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        P::param(self.params.len())
    }

    /// `column op value`, when the filter sets the value.
    fn compare(&mut self, column: &str, op: &str, value: Option<Param>) {
        if let Some(value) = value {
            let placeholder = self.bind(value);
            self.clauses.push(format!("{column} {op} {placeholder}"));
        }
    }

    fn eq(&mut self, column: &str, value: Option<&String>) {
        self.compare(column, "=", value.cloned().map(Param::Text));
    }

    /// `column` is one of `values`, when the filter names any.
    fn one_of(&mut self, column: &str, values: Param) {
        let empty = match &values {
            Param::Texts(values) => values.is_empty(),
            Param::Ints(values) => values.is_empty(),
            _ => false,
        };
        if !empty {
            self.params.push(values);
            self.clauses.push(P::in_list(column, self.params.len()));
        }
    }

    fn state_in<S: Copy>(&mut self, states: &[S], name: fn(S) -> &'static str) {
        self.clauses
            .push(format!("state IN ({})", rules::sql_list(states, name)));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn of_deliveries(filter: &DeliveryFilter) -> Self {
        let mut conditions = Self::new();
        conditions.eq("tenant", filter.tenant.as_ref());
        conditions.compare(
            "state",
            "=",
            filter.state.map(|s| Param::Text(s.as_str().into())),
        );
        conditions.eq("handler", filter.handler.as_ref());
        conditions.eq("signal_id", filter.signal_id.as_ref());
        conditions.one_of("id", Param::Ints(filter.ids.clone()));
        conditions
    }

    fn of_directives(filter: &DirectiveFilter) -> Self {
        let mut conditions = Self::new();
        conditions.eq("tenant", filter.tenant.as_ref());
        conditions.compare(
            "state",
            "=",
            filter.state.map(|s| Param::Text(s.as_str().into())),
        );
        conditions.eq("name", filter.name.as_ref());
        conditions.eq("signal_id", filter.signal_id.as_ref());
        conditions.one_of("id", Param::Texts(filter.ids.clone()));
        conditions
    }
}

fn limit(limit: Option<u32>) -> String {
    limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
}

/// The signals a filter matches, in the order they were stored.
pub fn signals<P: Placeholders>(filter: &SignalFilter) -> Statement {
    let mut conditions = Conditions::<P>::new();
    conditions.eq("tenant", filter.tenant.as_ref());
    conditions.one_of("id", Param::Texts(filter.ids.clone()));
    conditions.eq("name", filter.name.as_ref());
    conditions.compare("inserted_at", ">=", filter.since.map(Param::Time));
    conditions.compare("inserted_at", "<", filter.until.map(Param::Time));
    Statement {
        sql: format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals{} ORDER BY seq{}",
            conditions.sql(),
            limit(filter.limit)
        ),
        params: conditions.params,
    }
}

/// The deliveries a filter matches, oldest first.
pub fn deliveries<P: Placeholders>(filter: &DeliveryFilter) -> Statement {
    let conditions = Conditions::<P>::of_deliveries(filter);
    Statement {
        sql: format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries{} ORDER BY id{}",
            conditions.sql(),
            limit(filter.limit)
        ),
        params: conditions.params,
    }
}

/// The directives a filter matches, oldest first.
pub fn directives<P: Placeholders>(filter: &DirectiveFilter) -> Statement {
    let conditions = Conditions::<P>::of_directives(filter);
    Statement {
        sql: format!(
            "SELECT {DIRECTIVE_COLUMNS} FROM directives{} ORDER BY seq{}",
            conditions.sql(),
            limit(filter.limit)
        ),
        params: conditions.params,
    }
}

/// Makes the matched deliveries an operator may retry
/// ([`rules::RETRYABLE_BY_OPERATOR`]) available now. A discarded delivery
/// gets a fresh budget of the size it had.
pub fn retry_deliveries<P: Placeholders>(filter: &DeliveryFilter, now: DateTime<Utc>) -> Statement {
    let mut conditions = Conditions::<P>::of_deliveries(filter);
    conditions.state_in(rules::RETRYABLE_BY_OPERATOR, DeliveryState::as_str);
    let now = conditions.bind(Param::Time(now));
    Statement {
        sql: format!(
            "UPDATE deliveries SET \
             max_attempts = CASE WHEN state = 'retryable' THEN max_attempts ELSE attempt + max_attempts END, \
             state = 'available', scheduled_at = {now}, finished_at = NULL{}",
            conditions.sql()
        ),
        params: conditions.params,
    }
}

/// Cancels the matched deliveries not yet running or finished
/// ([`rules::CANCELABLE_DELIVERIES`]).
pub fn cancel_deliveries<P: Placeholders>(
    filter: &DeliveryFilter,
    now: DateTime<Utc>,
) -> Statement {
    let mut conditions = Conditions::<P>::of_deliveries(filter);
    conditions.state_in(rules::CANCELABLE_DELIVERIES, DeliveryState::as_str);
    let now = conditions.bind(Param::Time(now));
    let error = conditions.bind(Param::Text(rules::CANCELED_BY_OPERATOR.into()));
    Statement {
        sql: format!(
            "UPDATE deliveries SET state = 'canceled', finished_at = {now}, last_error = {error}{}",
            conditions.sql()
        ),
        params: conditions.params,
    }
}

/// Cancels the matched directives not yet running or finished
/// ([`rules::CANCELABLE_DIRECTIVES`]).
pub fn cancel_directives<P: Placeholders>(
    filter: &DirectiveFilter,
    now: DateTime<Utc>,
) -> Statement {
    let mut conditions = Conditions::<P>::of_directives(filter);
    conditions.state_in(rules::CANCELABLE_DIRECTIVES, DirectiveState::as_str);
    let now = conditions.bind(Param::Time(now));
    let error = conditions.bind(Param::Text(rules::CANCELED_BY_OPERATOR.into()));
    Statement {
        sql: format!(
            "UPDATE directives SET state = 'canceled', updated_at = {now}, last_error = {error}{}",
            conditions.sql()
        ),
        params: conditions.params,
    }
}

/// Forgets the handlers `host` registered, but for those named in `keep`.
pub fn forget_host_handlers<P: Placeholders>(host: &str, keep: &[String]) -> Statement {
    let mut conditions = Conditions::<P>::new();
    conditions.compare("host", "=", Some(Param::Text(host.into())));
    if !keep.is_empty() {
        conditions.params.push(Param::Texts(keep.to_vec()));
        conditions.clauses.push(format!(
            "NOT ({})",
            P::in_list("handler", conditions.params.len())
        ));
    }
    Statement {
        sql: format!("DELETE FROM handler_registrations{}", conditions.sql()),
        params: conditions.params,
    }
}

/// Forgets the handler `name` on every host.
pub fn unregister_handler<P: Placeholders>(name: &str) -> Statement {
    Statement {
        sql: format!(
            "DELETE FROM handler_registrations WHERE handler = {}",
            P::param(1)
        ),
        params: vec![Param::Text(name.into())],
    }
}

/// Writes one registration, replacing the host's row for that handler: two
/// processes that share a host id write the same rows without a conflict.
pub fn register_handler<P: Placeholders>(registration: &HandlerRegistration) -> Statement {
    let r = registration;
    let text = |value: &Option<String>| value.clone().map_or(Param::Null, Param::Text);
    let params = vec![
        Param::Text(r.host.clone()),
        Param::Text(r.handler.clone()),
        text(&r.digest),
        Param::Text(serde_json::json!(r.subscriptions).to_string()),
        text(&r.package),
        Param::Int(i64::from(r.max_attempts)),
        text(&r.load_error),
        Param::Time(r.registered_at),
    ];
    let placeholders: Vec<String> = (1..=params.len()).map(P::param).collect();
    Statement {
        sql: format!(
            "INSERT INTO handler_registrations ({REGISTRATION_COLUMNS}) VALUES ({}) \
             ON CONFLICT (host, handler) DO UPDATE SET digest = excluded.digest, \
             subscriptions = excluded.subscriptions, package = excluded.package, \
             max_attempts = excluded.max_attempts, load_error = excluded.load_error, \
             registered_at = excluded.registered_at",
            placeholders.join(", ")
        ),
        params,
    }
}

/// Every registration (the caller sorts them: the databases' collations
/// differ).
pub fn registered_handlers() -> Statement {
    Statement {
        sql: format!("SELECT {REGISTRATION_COLUMNS} FROM handler_registrations"),
        params: Vec::new(),
    }
}

/// A registration's `subscriptions` column.
pub fn subscriptions_from_column(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Database(format!(
            "a registration's subscriptions are not a JSON list: {e}"
        ))
    })
}

// ---------------------------------------------------------------------------
// Counts (`Store::stats`).

/// A count the triggers of `counts.sql` keep: rows of one `queue`
/// (`deliveries` or `directives`), `group` (a handler, or a directive's
/// name), tenant and state; summed over the writers' slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub queue: String,
    pub group: String,
    pub tenant: String,
    pub state: String,
    pub n: i64,
}

/// Every kept count: a row per queue, group, tenant and state, however many
/// rows they count.
pub fn queue_counts() -> Statement {
    Statement {
        sql: "SELECT queue, grp, tenant, state, CAST(SUM(n) AS BIGINT) FROM queue_counts \
              GROUP BY queue, grp, tenant, state"
            .into(),
        params: Vec::new(),
    }
}

/// A handler with waiting deliveries, and the scheduled time of its
/// oldest (none if the counts ran ahead of the rows a moment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRow {
    pub handler: String,
    pub oldest: Option<DateTime<Utc>>,
}

/// The oldest waiting delivery of each handler the kept counts say has
/// any: one step of `deliveries_waiting_by_handler` a handler.
pub fn oldest_waiting() -> Statement {
    Statement {
        sql: "SELECT w.grp, (SELECT MIN(d.scheduled_at) FROM deliveries d \
              WHERE d.handler = w.grp AND d.state IN ('available', 'retryable')) \
              FROM (SELECT grp FROM queue_counts WHERE queue = 'deliveries' \
              AND state IN ('available', 'retryable') GROUP BY grp HAVING SUM(n) > 0) w"
            .into(),
        params: Vec::new(),
    }
}

/// The newest attempts of one handler and tenant: their count, summed and
/// longest duration (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRow {
    pub handler: String,
    pub tenant: String,
    pub attempts: i64,
    pub sum_us: i64,
    pub max_us: i64,
}

/// The newest [`RECENT_ATTEMPTS`] attempts by handler and tenant
/// (deliveries are numbered in insertion order).
pub fn recent_attempts() -> Statement {
    Statement {
        sql: format!(
            "SELECT d.handler, d.tenant, COUNT(*), CAST(SUM(a.duration_us) AS BIGINT), \
             MAX(a.duration_us) FROM (SELECT delivery_id, duration_us FROM attempts \
             ORDER BY delivery_id DESC LIMIT {RECENT_ATTEMPTS}) a \
             JOIN deliveries d ON d.id = a.delivery_id GROUP BY d.handler, d.tenant"
        ),
        params: Vec::new(),
    }
}

/// The newest failed attempts, newest first (by the `attempts_failed`
/// index, not a walk past the successful ones).
pub fn recent_failures() -> Statement {
    Statement {
        sql: format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE error IS NOT NULL \
             ORDER BY delivery_id DESC, attempt DESC LIMIT {RECENT_FAILURES}"
        ),
        params: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Retention (`crate::retention`).

/// A row a prune looked at: its key and time, the cursor's next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCandidate {
    pub key: i64,
    pub at: DateTime<Utc>,
}

/// The one number a `SELECT COUNT(*)` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

/// Where the rows of a [`PruneKind`] are: table, key and time columns, and
/// the condition that picks them (with the terms of their partial index
/// written out, since SQLite uses such an index only for a query that
/// repeats its `WHERE`).
struct PruneTable {
    table: &'static str,
    key: &'static str,
    time: &'static str,
    condition: String,
}

impl PruneTable {
    fn of(kind: PruneKind) -> Self {
        match kind {
            PruneKind::Deliveries(state) => Self {
                table: "deliveries",
                key: "id",
                time: "finished_at",
                condition: format!(
                    "state IN ({}) AND state = '{}'",
                    rules::sql_list(&PruneKind::FINISHED_DELIVERIES, DeliveryState::as_str),
                    state.as_str()
                ),
            },
            PruneKind::Directives(state) => Self {
                table: "directives",
                key: "seq",
                time: "updated_at",
                condition: format!(
                    "state IN ({}) AND state = '{}'",
                    rules::sql_list(&PruneKind::FINISHED_DIRECTIVES, DirectiveState::as_str),
                    state.as_str()
                ),
            },
            PruneKind::Signals => Self {
                table: "signals",
                key: "seq",
                time: "inserted_at",
                condition: "1 = 1".into(),
            },
            PruneKind::DirectiveKeys => Self {
                table: "pruned_directive_keys",
                key: "seq",
                time: "pruned_at",
                condition: "1 = 1".into(),
            },
        }
    }

    /// The rule's rows: its condition, time and tenants.
    fn conditions<P: Placeholders>(&self, rule: &PruneRule) -> Conditions<P> {
        let mut conditions = Conditions::<P>::new();
        conditions.clauses.push(self.condition.clone());
        conditions.compare(self.time, "<", Some(Param::Time(rule.older_than)));
        if let PruneKind::Deliveries(_) = rule.kind {
            // A delivery's id is shown to operators and kept by its
            // directives. SQLite numbers a new row one past the highest
            // left, so the newest delivery stays until a newer one exists:
            // no id is ever given twice.
            conditions
                .clauses
                .push("id < (SELECT MAX(id) FROM deliveries)".into());
        }
        match &rule.tenants {
            TenantScope::Only(tenant) => conditions.eq("tenant", Some(tenant)),
            TenantScope::AllBut(others) if others.is_empty() => {}
            TenantScope::AllBut(others) => {
                conditions.params.push(Param::Texts(others.clone()));
                let n = conditions.params.len();
                conditions
                    .clauses
                    .push(format!("NOT ({})", P::in_list("tenant", n)));
            }
        }
        conditions
    }
}

/// The next `limit` rows of `rule` past `cursor`, in (time, key) order.
pub fn prune_candidates<P: Placeholders>(
    rule: &PruneRule,
    cursor: PruneCursor,
    limit: u32,
) -> Statement {
    let table = PruneTable::of(rule.kind);
    let mut conditions = table.conditions::<P>(rule);
    let (time, key) = (table.time, table.key);
    let at = conditions.bind(Param::Time(cursor.at));
    let after = conditions.bind(Param::Int(cursor.key));
    // A row value, which both databases read as a range of the index.
    conditions
        .clauses
        .push(format!("({time}, {key}) > ({at}, {after})"));
    Statement {
        sql: format!(
            "SELECT {key}, {time} FROM {}{} ORDER BY {time}, {key} LIMIT {limit}",
            table.table,
            conditions.sql()
        ),
        params: conditions.params,
    }
}

/// How many rows `rule` would delete now: for signals, those nothing holds.
pub fn count_prunable<P: Placeholders>(rule: &PruneRule) -> Statement {
    let table = PruneTable::of(rule.kind);
    let mut conditions = table.conditions::<P>(rule);
    if rule.kind == PruneKind::Signals {
        conditions.clauses.push(SIGNAL_NOT_HELD.into());
    }
    Statement {
        sql: format!("SELECT COUNT(*) FROM {}{}", table.table, conditions.sql()),
        params: conditions.params,
    }
}

/// A signal no delivery or directive refers to any more.
const SIGNAL_NOT_HELD: &str = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.signal_id = signals.id) \
     AND NOT EXISTS (SELECT 1 FROM directives x WHERE x.signal_id = signals.id)";

/// Deletes the rows of `keys` that `rule` still matches (a delivery an
/// operator retried meanwhile is not finished any more); signals only if
/// nothing holds them.
pub fn prune_delete<P: Placeholders>(rule: &PruneRule, keys: &[i64]) -> Statement {
    let table = PruneTable::of(rule.kind);
    let mut conditions = table.conditions::<P>(rule);
    conditions.one_of(table.key, Param::Ints(keys.to_vec()));
    if rule.kind == PruneKind::Signals {
        conditions.clauses.push(SIGNAL_NOT_HELD.into());
    }
    Statement {
        sql: format!("DELETE FROM {}{}", table.table, conditions.sql()),
        params: conditions.params,
    }
}

/// Locks the signals of `keys` for the rest of the transaction, so that a
/// replay adding deliveries to one of them waits for the prune or makes it
/// keep the signal.
pub fn lock_signals<P: Placeholders>(keys: &[i64]) -> Statement {
    let mut conditions = Conditions::<P>::new();
    conditions.one_of("seq", Param::Ints(keys.to_vec()));
    Statement {
        // In `seq` order, as a replay locks them: no deadlock between the two.
        sql: format!(
            "SELECT seq, inserted_at FROM signals{} ORDER BY seq{}",
            conditions.sql(),
            P::LOCK_ROWS
        ),
        params: conditions.params,
    }
}

/// The attempts of deliveries (among `delivery_ids`) that are gone.
pub fn prune_orphan_attempts<P: Placeholders>(delivery_ids: &[i64]) -> Statement {
    let mut conditions = Conditions::<P>::new();
    conditions.one_of("delivery_id", Param::Ints(delivery_ids.to_vec()));
    conditions
        .clauses
        .push("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = attempts.delivery_id)".into());
    Statement {
        sql: format!("DELETE FROM attempts{}", conditions.sql()),
        params: conditions.params,
    }
}

/// The directives of `keys` that `rule` still matches, to keep their keys.
pub fn directives_to_prune<P: Placeholders>(rule: &PruneRule, keys: &[i64]) -> Statement {
    let table = PruneTable::of(rule.kind);
    let mut conditions = table.conditions::<P>(rule);
    conditions.one_of(table.key, Param::Ints(keys.to_vec()));
    Statement {
        sql: format!(
            "SELECT {DIRECTIVE_COLUMNS} FROM directives{}",
            conditions.sql()
        ),
        params: conditions.params,
    }
}

/// Keeps the idempotency keys of `directives`, with their name and payload
/// digest ([`rules::payload_digest`]), so that a request of a pruned key is
/// still told a duplicate from a conflict.
pub fn keep_directive_keys<P: Placeholders>(
    directives: &[Directive],
    now: DateTime<Utc>,
) -> Statement {
    let mut params = Vec::with_capacity(directives.len() * 5);
    let mut rows = Vec::with_capacity(directives.len());
    for d in directives {
        let first = params.len();
        params.extend([
            Param::Text(d.tenant.clone()),
            Param::Text(d.idempotency_key.clone()),
            Param::Text(d.name.clone()),
            Param::Text(rules::payload_digest(&d.payload)),
            Param::Time(now),
        ]);
        let placeholders: Vec<String> = (first + 1..=first + 5).map(P::param).collect();
        rows.push(format!("({})", placeholders.join(", ")));
    }
    Statement {
        sql: format!(
            "INSERT INTO pruned_directive_keys (tenant, idempotency_key, name, payload_digest, pruned_at) \
             VALUES {} ON CONFLICT (tenant, idempotency_key) DO NOTHING",
            rows.join(", ")
        ),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbered;

    impl Placeholders for Numbered {
        fn param(n: usize) -> String {
            format!("${n}")
        }
        fn in_list(column: &str, n: usize) -> String {
            format!("{column} = ANY(${n})")
        }
        const LOCK_ROWS: &'static str = " FOR UPDATE";
    }

    #[test]
    fn a_filter_binds_only_what_it_sets_in_order() {
        let filter = DeliveryFilter {
            tenant: Some("acme".into()),
            ids: vec![3, 4],
            limit: Some(5),
            ..DeliveryFilter::default()
        };
        let statement = deliveries::<Numbered>(&filter);
        assert_eq!(
            statement.sql,
            format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant = $1 AND id = ANY($2) \
                 ORDER BY id LIMIT 5"
            )
        );
        assert_eq!(
            statement.params,
            vec![Param::Text("acme".into()), Param::Ints(vec![3, 4])]
        );
        let everything = deliveries::<Numbered>(&DeliveryFilter::default());
        assert!(!everything.sql.contains("WHERE"), "{}", everything.sql);
    }

    #[test]
    fn an_operator_action_adds_its_states_and_binds_after_the_filter() {
        let filter = DirectiveFilter {
            tenant: Some("acme".into()),
            ..DirectiveFilter::default()
        };
        let at = DateTime::<Utc>::from_timestamp(1, 0).unwrap_or_default();
        let statement = cancel_directives::<Numbered>(&filter, at);
        assert!(
            statement.sql.ends_with(&format!(
                "updated_at = $2, last_error = $3 WHERE tenant = $1 AND state IN ({})",
                rules::sql_list(rules::CANCELABLE_DIRECTIVES, DirectiveState::as_str)
            )),
            "{}",
            statement.sql
        );
        assert_eq!(
            statement.params,
            vec![
                Param::Text("acme".into()),
                Param::Time(at),
                Param::Text(rules::CANCELED_BY_OPERATOR.into())
            ]
        );
    }
}
