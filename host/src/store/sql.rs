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
     started_at, duration_us, fuel, directive_count, output, finished_at";

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
