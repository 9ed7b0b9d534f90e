//! The user's own database (`race --check-db`), read only through the checks they give.
//!
//! This is the one place booking-cli runs SQL it did not write, so it is fenced in:
//! - every check and count runs in a `READ ONLY` transaction, rolled back after it, under a
//!   statement time-out: a check that tries to write fails and changes nothing;
//! - a check is one statement, wrapped as `SELECT row_to_json(c)::text FROM (<check>) c`, so
//!   it cannot carry a second statement, and every column comes back as JSON, whatever its type;
//! - `--setup` is the only SQL that writes: the user's own reset before each run, run as given.

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
            .options([("statement_timeout", statement_timeout.as_str())])
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

    /// Runs the user's `--setup` statements, as given (several statements are allowed).
    pub async fn setup(&self, statements: &[String]) -> Result<(), CheckDbError> {
        for (i, sql) in statements.iter().enumerate() {
            self.within(&format!("--setup {}", i + 1), async {
                sqlx::raw_sql(sql).execute(&self.pool).await.map(drop)
            })
            .await?;
        }
        Ok(())
    }

    /// The rows `check` returns, read in a `READ ONLY` transaction. `what` names it in errors.
    pub async fn rows(&self, what: &str, check: &str) -> Result<Found, CheckDbError> {
        let texts = self
            .within(what, async {
                let mut tx = self.read_only().await?;
                let rows = fetch(&mut tx, check).await;
                tx.rollback().await?;
                rows
            })
            .await?;
        Ok(found(texts))
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
        let mut tx = self.within("connecting", self.pool.begin()).await?;
        for (i, sql) in setup.iter().enumerate() {
            self.within(&format!("--setup {}", i + 1), async {
                sqlx::raw_sql(sql).execute(&mut *tx).await.map(drop)
            })
            .await?;
        }
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
            let texts = self.within(what, fetch(&mut tx, sql)).await?;
            results.push(found(texts));
        }
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

/// The rows of `check`, each rendered as a JSON object by PostgreSQL, on `tx`.
async fn fetch(
    tx: &mut Transaction<'static, Postgres>,
    check: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let wrapped = format!(
        "SELECT row_to_json(c)::text FROM ({}) c",
        one_statement(check)
    );
    sqlx::query_scalar(&wrapped).fetch_all(&mut **tx).await
}

/// The first [`MAX_ROWS`] rows as objects, and how many there were.
fn found(texts: Vec<String>) -> Found {
    let mut found = Found {
        total: texts.len(),
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

/// The check without the `;` and blanks a command line often ends it with (it becomes a
/// subquery).
fn one_statement(check: &str) -> &str {
    check.trim().trim_end_matches(';').trim_end()
}

#[cfg(test)]
mod tests {
    use super::one_statement;

    #[test]
    fn a_trailing_semicolon_is_dropped_and_nothing_else() {
        assert_eq!(one_statement(" select 1 ; \n"), "select 1");
        assert_eq!(one_statement("select ';'"), "select ';'");
    }
}
