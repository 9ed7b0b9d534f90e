//! The user's own database (`race --check-db`), read only through the checks they give.
//!
//! This is the one place booking-cli runs SQL it did not write, so it is fenced in:
//! - the session is read-only (`default_transaction_read_only`), and every check and count
//!   runs in a `READ ONLY` transaction, rolled back after it, under a statement time-out: a
//!   check that tries to write — directly, or through a function such as `nextval` — fails and
//!   changes nothing; a session-level advisory lock a check took is released before the
//!   transaction ends (`pg_advisory_unlock_all`), so it cannot hold the burst;
//! - a check is one statement, wrapped as `SELECT row_to_json(c)::text, count(*) OVER () FROM
//!   (<check>) c LIMIT 100`, so it cannot carry a second statement, every column comes back as
//!   JSON whatever its type, and the rows beyond the ones shown are counted by the server,
//!   not held here;
//! - `--setup` is the only SQL that writes: the user's own reset before each run, in a
//!   transaction of its own (`BEGIN READ WRITE` … `COMMIT`); a setup that would end that
//!   transaction itself (`COMMIT`, `ROLLBACK`, `END`, `BEGIN`) is refused before anything runs.
//!
//! What PostgreSQL cannot refuse in a read-only transaction: functions that act outside it —
//! `pg_terminate_backend`, `pg_stat_reset`, `dblink_exec` (another connection, its own
//! transaction), `pg_notify`. Give `--check-db` a role that may do none of them: one with
//! `SELECT` on the tables the checks read, and nothing more (docs/race.md).

use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool, Postgres, Transaction};

use crate::error::InputError;

/// Rows of one check kept for the report; the count of all of them is kept anyway.
pub const MAX_ROWS: usize = 100;

/// A row a check returned: a violation of the invariant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// The check that returned it (its SQL, or `--max-successes N`).
    pub check: String,
    /// Its columns, in order, as PostgreSQL renders them in JSON.
    pub row: Row,
}

/// A row's columns in the order the query gave them (a JSON object keeps no order of its own
/// once parsed into a map; the table of violations should read as the query was written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub Vec<(String, Value)>);

impl Row {
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, v)| v)
    }

    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Columns;
        impl<'de> Visitor<'de> for Columns {
            type Value = Row;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a row as a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Row, A::Error> {
                let mut columns = Vec::new();
                while let Some(entry) = access.next_entry::<String, Value>()? {
                    columns.push(entry);
                }
                Ok(Row(columns))
            }
        }
        deserializer.deserialize_map(Columns)
    }
}

/// What one check found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Up to [`MAX_ROWS`] rows.
    pub rows: Vec<Row>,
    /// How many rows it returned in all.
    pub total: usize,
}

/// Why the user's database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckDbError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the check database (--check-db) did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{what} failed on the check database: {source}")]
    Query {
        what: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A connection to the user's database.
#[derive(Clone)]
pub struct CheckDb {
    pool: PgPool,
    timeout: Duration,
}

impl CheckDb {
    /// Parses `url` (a `postgres://` URL, never echoed: it may hold a password) and opens one
    /// connection, within `timeout` — which is also every statement's server-side time-out.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, CheckDbError> {
        let scheme = url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(InputError::Invalid(
                "--check-db must be a PostgreSQL URL (postgres://user@host:port/database); the checks run on PostgreSQL only".to_owned(),
            )
            .into());
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| InputError::BadUrl {
            variable: "--check-db",
            what: "PostgreSQL",
            reason: e.to_string(),
        })?;
        let statement_timeout = format!("{}ms", timeout.as_millis().max(1));
        let options = options
            .options([
                ("statement_timeout", statement_timeout.as_str()),
                // Every transaction read-only unless it says otherwise: only --setup does.
                ("default_transaction_read_only", "on"),
            ])
            .application_name("booking-cli race")
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        let db = Self { pool, timeout };
        // Fail here, before a request is sent, when the database cannot be reached.
        db.within("connecting", async { db.pool.acquire().await.map(drop) })
            .await?;
        Ok(db)
    }

    /// Runs the user's `--setup` statements, as given (several statements are allowed), in a
    /// transaction of their own: all of them, or none.
    pub async fn setup(&self, statements: &[String]) -> Result<(), CheckDbError> {
        if statements.is_empty() {
            return Ok(());
        }
        let tx = self.set_up(statements).await?;
        self.within("--setup (commit)", tx.commit()).await
    }

    /// A read-write transaction with the `--setup` statements run in it (after checking that
    /// none of them ends or opens a transaction), left open for the caller to end.
    async fn set_up(
        &self,
        statements: &[String],
    ) -> Result<Transaction<'static, Postgres>, CheckDbError> {
        check_setup(statements)?;
        let mut tx = self
            .within("--setup", self.pool.begin_with("BEGIN READ WRITE"))
            .await?;
        for (i, sql) in statements.iter().enumerate() {
            self.within(&format!("--setup {}", i + 1), async {
                sqlx::raw_sql(sql).execute(&mut *tx).await.map(drop)
            })
            .await?;
        }
        Ok(tx)
    }

    /// The rows `check` returns, read in a `READ ONLY` transaction. `what` names it in errors.
    pub async fn rows(&self, what: &str, check: &str) -> Result<Found, CheckDbError> {
        let rows = self
            .within(what, async {
                let mut tx = self.read_only().await?;
                let rows = fetch(&mut tx, what, check).await;
                // A session-level advisory lock outlives the transaction: not past this read.
                unlock_all(&mut tx).await?;
                tx.rollback().await?;
                rows
            })
            .await??;
        Ok(found(rows))
    }

    /// A dry run of everything a run will do on the database, written nowhere: in one
    /// transaction, the `setup` statements, then the transaction made `READ ONLY`, then each
    /// query of `queries` (`(what, sql)`) — and a rollback, whatever happened. Returns what each
    /// query found. A query PostgreSQL refuses fails here, before anything was sent or kept.
    pub async fn trial(
        &self,
        setup: &[String],
        queries: &[(String, String)],
    ) -> Result<Vec<Found>, CheckDbError> {
        let mut tx = self.set_up(setup).await?;
        // PostgreSQL lets a transaction turn read-only after it wrote, never back.
        self.within("SET TRANSACTION READ ONLY", async {
            sqlx::raw_sql("SET TRANSACTION READ ONLY")
                .execute(&mut *tx)
                .await
                .map(drop)
        })
        .await?;
        let mut results = Vec::with_capacity(queries.len());
        for (what, sql) in queries {
            let rows = self.within(what, fetch(&mut tx, what, sql)).await??;
            results.push(found(rows));
        }
        self.within("releasing advisory locks", unlock_all(&mut tx))
            .await?;
        self.within("rolling back", tx.rollback()).await?;
        Ok(results)
    }

    /// The one number `sql` returns (`--count`): one row, one integer column.
    pub async fn count(&self, sql: &str) -> Result<i64, CheckDbError> {
        number(&self.rows("--count", sql).await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn read_only(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin_with("BEGIN READ ONLY").await
    }

    /// `work` within the deadline (a database that does not answer is said to be one).
    async fn within<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, CheckDbError> {
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), work).await {
            Err(_) | Ok(Err(sqlx::Error::PoolTimedOut)) => Err(CheckDbError::Timeout(self.timeout)),
            Ok(Err(source)) => Err(CheckDbError::Query {
                what: what.to_owned(),
                source,
            }),
            Ok(Ok(value)) => Ok(value),
        }
    }
}

/// The first [`MAX_ROWS`] rows of `check`, each rendered as a JSON object by PostgreSQL, and
/// how many it returned in all (counted by the server), on `tx`. The outer error is bad
/// input (not one statement); the inner one is PostgreSQL's.
async fn fetch(
    tx: &mut Transaction<'static, Postgres>,
    what: &str,
    check: &str,
) -> Result<Result<(Vec<String>, usize), CheckDbError>, sqlx::Error> {
    let statement = match one_statement(what, check) {
        Ok(statement) => statement,
        Err(error) => return Ok(Err(error)),
    };
    // On lines of their own: a check that ends in a `--` comment still closes the subquery.
    let wrapped = format!(
        "SELECT row_to_json(c)::text, count(*) OVER () FROM (\n{statement}\n) c LIMIT {MAX_ROWS}"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(&wrapped).fetch_all(&mut **tx).await?;
    let total = rows.first().map_or(0, |(_, total)| {
        usize::try_from(*total).unwrap_or(usize::MAX)
    });
    Ok(Ok((
        rows.into_iter().map(|(text, _)| text).collect(),
        total,
    )))
}

async fn unlock_all(tx: &mut Transaction<'static, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// A `--setup` that would end (or open) its own transaction is refused: its writes would
/// stick even when the trial rolls back, and a run's setup would no longer be all-or-nothing.
fn check_setup(statements: &[String]) -> Result<(), InputError> {
    for (i, sql) in statements.iter().enumerate() {
        if let Some(control) = crate::sql_text::statements(sql)
            .into_iter()
            .find(|s| crate::sql_text::is_transaction_control(s))
        {
            return Err(InputError::Invalid(format!(
                "--setup {}: '{}' ends or opens a transaction; booking-cli runs the setup in a transaction of its own, committed once it all ran — leave transaction control out",
                i + 1,
                crate::sql_text::first_word(control)
            )));
        }
    }
    Ok(())
}

/// The first [`MAX_ROWS`] rows as objects, and how many there were.
fn found((texts, total): (Vec<String>, usize)) -> Found {
    let mut found = Found {
        total,
        ..Found::default()
    };
    for text in texts.iter().take(MAX_ROWS) {
        match serde_json::from_str::<Row>(text) {
            Ok(row) => found.rows.push(row),
            Err(_) => found
                .rows
                .push(Row(vec![("row".to_owned(), Value::String(text.clone()))])),
        }
    }
    found
}

/// The one integer a `--count` returned: one row of one integer column, else bad input.
pub fn number(found: &Found) -> Result<i64, CheckDbError> {
    let value = match (found.total, found.rows.first()) {
        (1, Some(row)) if row.len() == 1 => row.0.first().map(|(_, v)| v.clone()),
        _ => None,
    };
    let number = value.as_ref().and_then(|v| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    number.ok_or_else(|| {
        InputError::Invalid(format!(
            "--count must return one row of one integer column (e.g. SELECT count(*) FROM orders); it returned {} row(s){}",
            found.total,
            found
                .rows
                .first()
                .map(|r| format!(", the first {}", serde_json::to_string(r).unwrap_or_default()))
                .unwrap_or_default()
        ))
        .into()
    })
}

/// The check as one statement, without the `;`, comments and blanks a command line often
/// ends it with (it becomes a subquery); more than one statement is bad input.
fn one_statement<'a>(what: &str, check: &'a str) -> Result<&'a str, CheckDbError> {
    match crate::sql_text::statements(check).as_slice() {
        [one] => Ok(one),
        [] => Err(InputError::Invalid(format!("{what} is empty")).into()),
        _ => Err(InputError::Invalid(format!(
            "{what} holds more than one statement; a check is one query"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::one_statement;

    #[test]
    fn a_trailing_semicolon_or_comment_is_dropped_and_nothing_else() {
        assert_eq!(one_statement("c", " select 1 ; \n").ok(), Some("select 1"));
        assert_eq!(one_statement("c", "select ';'").ok(), Some("select ';'"));
        assert_eq!(
            one_statement("c", "select 1 -- the end").ok(),
            Some("select 1 -- the end")
        );
        assert_eq!(
            one_statement("c", "select 1; -- the end").ok(),
            Some("select 1")
        );
        assert!(one_statement("c", "select 1; select 2").is_err());
    }
}
