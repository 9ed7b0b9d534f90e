//! The repository: every SQL statement of booking-cli lives in this file and the two beside it
//! (`repo/shards.rs` for `sharded`, `repo/batch.rs` for `batched`), one function per operation,
//! every value bound as a parameter.
//!
//! Two kinds of operation: pool-level ones on [`Repo`] (schema, seeding, preparing and reading a
//! slot), and the steps of a booking on [`BookingTx`], a transaction a strategy drives step by
//! step so that the *order* of the steps — the thing the strategies differ in — stays visible in
//! the strategy's own file.
//!
//! Every statement names its tables without a schema: the connection's `search_path` is
//! `booking_cli` alone (see [`crate::db`]), so they can only be booking-cli's own. The statements
//! that drop or create the schema name it in full.
//!
//! **Every statement has a client-side deadline** (`--db-timeout`): [`within`] gives up on an
//! answer that does not come in time. A server-side `statement_timeout` is no substitute: a
//! server that is stalled (SIGSTOP, a frozen VM, a network that drops packets) cannot cancel
//! anything. A transaction abandoned this way is never committed by this tool; sqlx rolls it
//! back when the connection is next usable, and if it never is, the server rolls it back when
//! the connection closes.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{BookingRequest, RoomId, Stay};
use crate::error::{BookingError, InputError};

mod batch;
mod shards;

pub use batch::Batch;
pub use shards::{ShardTake, Take};

/// `db reset`'s first step: the project's tables, then its schema, then the schema again,
/// empty. `DROP TABLE` without `CASCADE` refuses when an object of another schema depends on
/// one of them (a view, a foreign key), so another application's objects are never dropped
/// along with ours; what is left in our schema after that is ours by its name.
/// The schema that holds every object booking-cli creates; the statements here name it too.
pub const SCHEMA: &str = "booking_cli";

/// Every object outside [`SCHEMA`] that depends on an object inside it, each with what it
/// depends on: a view on a table someone added to the schema, a column typed with an enum or
/// defaulting to a function created in it. `DROP SCHEMA … CASCADE` would drop those too (a
/// column and its data in someone else's table), so `db reset` and `db drop` refuse instead.
/// `pg_identify_object` gives any object's schema; a view's dependency is its rewrite rule's.
const FOREIGN_DEPENDENTS: &str = "
    WITH dependency AS (
        SELECT d.classid, d.objid, d.objsubid, d.refclassid, d.refobjid, d.refobjsubid,
               ref.schema AS ref_schema,
               -- A column default, a rule, a trigger, a constraint or a policy has no schema
               -- of its own in pg_identify_object: it is its table's.
               COALESCE(
                   dep.schema,
                   (SELECT n.nspname FROM pg_attrdef a
                      JOIN pg_class c ON c.oid = a.adrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE d.classid = 'pg_attrdef'::regclass AND a.oid = d.objid),
                   (SELECT n.nspname FROM pg_rewrite r
                      JOIN pg_class c ON c.oid = r.ev_class
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid),
                   (SELECT n.nspname FROM pg_trigger t
                      JOIN pg_class c ON c.oid = t.tgrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE d.classid = 'pg_trigger'::regclass AND t.oid = d.objid),
                   (SELECT n.nspname FROM pg_constraint k
                      JOIN pg_namespace n ON n.oid = k.connamespace
                     WHERE d.classid = 'pg_constraint'::regclass AND k.oid = d.objid),
                   (SELECT n.nspname FROM pg_policy p
                      JOIN pg_class c ON c.oid = p.polrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE d.classid = 'pg_policy'::regclass AND p.oid = d.objid)
               ) AS dep_schema
        FROM pg_depend d
        CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) AS ref
        CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS dep
        WHERE d.deptype IN ('n', 'a')
    )
    SELECT DISTINCT pg_describe_object(classid, objid, objsubid) AS dependent,
                    pg_describe_object(refclassid, refobjid, refobjsubid) AS depends_on
    FROM dependency
    WHERE ref_schema = $1 AND dep_schema IS DISTINCT FROM $1
    ORDER BY 1, 2";

/// Drops the project's tables, then its schema with whatever else is in it (nothing outside
/// it depends on any of it: checked first, in the same transaction).
const DROP_SCHEMA: [&str; 2] = [
    "DROP TABLE IF EXISTS booking_cli.bookings, booking_cli.inventory_shards, booking_cli.inventory,
                          booking_cli.rooms, booking_cli._sqlx_migrations",
    "DROP SCHEMA IF EXISTS booking_cli CASCADE",
];

/// A connection that broke under its `BEGIN` (its server restarted or closed it), as opposed to
/// a server that cannot be reached (refused: a new connection would fail the same way) or one
/// that does not answer (our own deadline).
fn is_dead_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused
        ),
        sqlx::Error::Protocol(_) => true,
        // 57P01: terminating connection due to administrator command (a restart).
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P01"),
        _ => false,
    }
}

/// Awaits one statement for at most `limit`: the client-side deadline every PostgreSQL call has.
pub async fn within<T>(
    limit: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(limit, statement)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

/// The error of a statement that got no answer within `limit`.
pub fn timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from PostgreSQL within {} (--db-timeout)",
            humantime::format_duration(limit)
        ),
    ))
}

/// How many shards `db reset` and `stress` split each night's rooms over unless told
/// (`--shards`): enough for the cores of a small database server to commit on several rows of
/// one night at once.
pub const DEFAULT_SHARDS: u32 = 8;

/// The hotel that `db reset` seeds.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub room_names: Vec<String>,
    pub first_night: NaiveDate,
    pub last_night: NaiveDate,
    pub total_inventory: i32,
    /// One (room, night) with its own inventory: the reference scenario's last room.
    pub scarce: (RoomId, NaiveDate, i32),
    /// How many shards each night's rooms are split over, for `sharded` (`db reset --shards`;
    /// 0: none).
    pub shards: u32,
}

impl SeedPlan {
    /// The same hotel with every night's rooms split over `shards` shards.
    pub fn with_shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// The same hotel with `rooms` rooms: the first names kept, the others called "Room N".
    pub fn with_rooms(mut self, rooms: u32) -> Self {
        let rooms = rooms as usize;
        self.room_names.truncate(rooms);
        let named = self.room_names.len();
        self.room_names
            .extend((named + 1..=rooms).map(|n| format!("Room {n}")));
        self
    }
}

/// What seeding wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    pub rooms: u64,
    pub inventory_rows: u64,
    /// Rows of `inventory_shards`.
    pub shard_rows: u64,
}

/// The final state of one night of a slot, read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NightState {
    pub room: RoomId,
    pub night: NaiveDate,
    pub total_inventory: i32,
    pub booked_count: i32,
    /// Confirmed booking rows whose stay covers this night.
    pub confirmed_bookings: i64,
    /// Holds (`reserve`) covering this night that have been neither confirmed nor given back:
    /// each is counted in `booked_count`.
    pub held_bookings: i64,
    /// Confirmed bookings of this night whose confirmation came after their hold's expiry: the
    /// room may have been given to someone else meanwhile.
    pub confirmed_after_expiry: i64,
}

impl NightState {
    /// The rows that hold a room: confirmed bookings and holds not yet given back.
    pub fn taken(&self) -> i64 {
        self.confirmed_bookings + self.held_bookings
    }

    /// More sold than the hotel has: by the counter, or by the rows.
    pub fn oversold(&self) -> bool {
        let total = i64::from(self.total_inventory);
        i64::from(self.booked_count) > total || self.taken() > total
    }

    /// The counter disagrees with the rows: an increment was lost (or one was made without
    /// its row).
    pub fn drifted(&self) -> bool {
        self.taken() != i64::from(self.booked_count)
    }

    /// The core definition of `overbooked`: oversold, or drifted.
    pub fn overbooked(&self) -> bool {
        self.oversold() || self.drifted()
    }

    /// Rooms left, by the rows (the truth) and by the counter, whichever is fewer.
    pub fn free(&self) -> i64 {
        let total = i64::from(self.total_inventory);
        (total - self.taken()).min(total - i64::from(self.booked_count))
    }
}

/// One booking row, as `GET /api/bookings/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BookingRow {
    pub id: i64,
    pub user_id: uuid::Uuid,
    pub room_id: i32,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What the availability check of a booking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Every night of the stay has `booked_count < total_inventory`; the counts as read, in
    /// date order.
    Free { booked: Vec<(NaiveDate, i32)> },
    /// The first night that does not.
    SoldOut { night: NaiveDate },
}

/// Pool-level operations. Cheap to clone (the pool is an `Arc`).
#[derive(Debug, Clone)]
pub struct Repo {
    pool: PgPool,
    /// The client-side deadline of every statement (`--db-timeout`).
    limit: Duration,
}

/// What claiming a night's fencing token found (see `strategy::fenced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The token is newer than every token claimed for the night before: it is the night's now.
    Claimed,
    /// A token at least as new was claimed already: `stored`, the newest the night has seen.
    Behind { stored: i64 },
}

impl Repo {
    pub fn new(pool: PgPool, limit: Duration) -> Self {
        Self { pool, limit }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The deadline of every statement.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Closes the pool, waiting at most the deadline for connections in use to come back (one
    /// stuck on a stalled server never would).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(self.limit, self.pool.close()).await;
    }

    /// How many connections the pool opens at most.
    pub fn pool_size(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// Whether the project's schema exists.
    pub async fn schema_exists(&self) -> Result<bool, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
                .bind(SCHEMA)
                .fetch_one(&self.pool),
        )
        .await
    }

    /// Drops the project's schema (see [`DROP_SCHEMA`]) and, with `recreate`, creates it again,
    /// empty, in one transaction — unless objects outside it depend on it: then nothing is
    /// dropped and they are returned, each as "dependent (depends on …)".
    /// Extensions installed into [`SCHEMA`]: booking-cli's migrations create none, so each is
    /// someone else's, and dropping the schema would take it with it.
    pub async fn foreign_extensions(&self) -> Result<Vec<String>, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "SELECT e.extname::text FROM pg_extension e
                   JOIN pg_namespace n ON n.oid = e.extnamespace
                  WHERE n.nspname = $1 ORDER BY 1",
            )
            .bind(SCHEMA)
            .fetch_all(&self.pool),
        )
        .await
    }

    pub async fn drop_schema(&self, recreate: bool) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = within(self.limit, self.pool.begin()).await?;
        let blockers: Vec<(String, String)> = within(
            self.limit,
            sqlx::query_as(FOREIGN_DEPENDENTS)
                .bind(SCHEMA)
                .fetch_all(&mut *tx),
        )
        .await?;
        if !blockers.is_empty() {
            within(self.limit, tx.rollback()).await?;
            return Ok(blockers
                .into_iter()
                .map(|(dependent, on)| format!("{dependent} (depends on {on})"))
                .collect());
        }
        for statement in DROP_SCHEMA {
            within(self.limit, sqlx::query(statement).execute(&mut *tx)).await?;
        }
        if recreate {
            within(
                self.limit,
                sqlx::query("CREATE SCHEMA booking_cli").execute(&mut *tx),
            )
            .await?;
        }
        within(self.limit, tx.commit()).await?;
        Ok(Vec::new())
    }

    /// Applies the embedded migrations into the (empty) schema; returns how many there are.
    /// `_sqlx_migrations` lands in `booking_cli` too, through the `search_path`.
    pub async fn migrate(&self) -> Result<usize, sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!();
        // sqlx would take an advisory lock keyed by the database's name — the very lock
        // another sqlx application migrating this database takes. `db reset` owns its schema
        // and needs no such lock.
        migrator.set_locking(false);
        tokio::time::timeout(self.limit, migrator.run(&self.pool))
            .await
            .map_err(|_| sqlx::migrate::MigrateError::Execute(timed_out(self.limit)))??;
        Ok(migrator.iter().count())
    }

    /// Seeds rooms and their inventory (on a freshly created schema).
    pub async fn seed(&self, plan: &SeedPlan) -> Result<SeedSummary, sqlx::Error> {
        let mut tx = within(self.limit, self.pool.begin()).await?;
        let rooms = within(self.limit, sqlx::query(
            "INSERT INTO rooms (id, name)
             SELECT ordinality::int, name FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ordinality)",
        )
        .bind(&plan.room_names)
        .execute(&mut *tx))
        .await?
        .rows_affected();
        let inventory_rows = within(
            self.limit,
            sqlx::query(
                "INSERT INTO inventory (room_id, date, total_inventory, booked_count)
             SELECT r.id, d::date, $3, 0
             FROM rooms r CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d",
            )
            .bind(plan.first_night)
            .bind(plan.last_night)
            .bind(plan.total_inventory)
            .execute(&mut *tx),
        )
        .await?
        .rows_affected();
        let (room, night, total) = plan.scarce;
        within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET total_inventory = $3 WHERE room_id = $1 AND date = $2",
            )
            .bind(room.get())
            .bind(night)
            .bind(total)
            .execute(&mut *tx),
        )
        .await?;
        let shard_rows = shards::split(
            &mut tx,
            self.limit,
            None,
            plan.first_night,
            plan.last_night.succ_opt().unwrap_or(NaiveDate::MAX),
            plan.shards,
        )
        .await?;
        within(self.limit, tx.commit()).await?;
        Ok(SeedSummary {
            rooms,
            inventory_rows,
            shard_rows,
        })
    }

    /// Whether `db reset` has created the tables this tool needs.
    pub async fn schema_ready(&self) -> Result<bool, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "SELECT to_regclass('booking_cli.inventory') IS NOT NULL
                AND to_regclass('booking_cli.bookings') IS NOT NULL
                AND to_regclass('booking_cli.rooms') IS NOT NULL",
            )
            .fetch_one(&self.pool),
        )
        .await
    }

    /// Checks, without writing, that the room exists and every night of the stay has an
    /// inventory row; the first failure is the error.
    pub async fn ensure_bookable(&self, room: RoomId, stay: &Stay) -> Result<(), BookingError> {
        // One round trip: it also runs on the refusal path of `one-statement` and `reserve`.
        let (exists, missing): (bool, Option<NaiveDate>) = self
            .repeatable(|| {
            sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1),
                        (SELECT d::date FROM generate_series($2::date, $3::date - 1, interval '1 day') AS d
                         WHERE NOT EXISTS (SELECT 1 FROM inventory i
                                           WHERE i.room_id = $1 AND i.date = d::date)
                         ORDER BY d LIMIT 1)",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_one(&self.pool)
            })
            .await?;
        match (exists, missing) {
            (false, _) => Err(InputError::UnknownRoom { room }.into()),
            (true, Some(night)) => Err(InputError::NoInventory { room, night }.into()),
            (true, None) => Ok(()),
        }
    }

    /// Makes a slot ready for a run: every night gets `total_inventory = inventory` and
    /// `booked_count = 0`, its rooms split again over `shards` empty shards (for `sharded`),
    /// and the bookings that touch those nights are deleted, in one transaction. Returns how
    /// many bookings were deleted.
    pub async fn prepare_slot(
        &self,
        room: RoomId,
        stay: &Stay,
        inventory: i32,
        shards: u32,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = within(self.limit, self.pool.begin()).await?;
        let deleted = within(
            self.limit,
            sqlx::query(
                "DELETE FROM bookings WHERE room_id = $1 AND start_date < $3 AND end_date > $2",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .execute(&mut *tx),
        )
        .await?
        .rows_affected();
        within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET total_inventory = $4, booked_count = 0, fence_token = 0
             WHERE room_id = $1 AND date >= $2 AND date < $3",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .bind(inventory)
            .execute(&mut *tx),
        )
        .await?;
        shards::split(
            &mut tx,
            self.limit,
            Some(room),
            stay.from(),
            stay.to(),
            shards,
        )
        .await?;
        within(self.limit, tx.commit()).await?;
        Ok(deleted)
    }

    /// Confirmed bookings of `room` whose stay overlaps `stay`: after a run, the bookings it
    /// made (preparing the slot deleted every earlier one), to account for every success the
    /// users were told of.
    pub async fn confirmed_bookings(&self, room: RoomId, stay: &Stay) -> Result<i64, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "SELECT count(*) FROM bookings
                 WHERE room_id = $1 AND status = 'confirmed' AND start_date < $3 AND end_date > $2",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_one(&self.pool),
        )
        .await
    }

    /// Reads the state of every night of a slot: the counter and the rows, side by side. The
    /// counter is the night's `booked_count` plus its shards' (`sharded` books on those).
    pub async fn slot_state(
        &self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<Vec<NightState>, sqlx::Error> {
        let rows: Vec<(NaiveDate, i32, i32, i64, i64, i64)> = self
            .repeatable(|| {
                sqlx::query_as(
                    "SELECT i.date, i.total_inventory,
                    -- The night's counter: its row's and, for `sharded`, its shards'.
                    i.booked_count + COALESCE((SELECT sum(s.booked) FROM inventory_shards s
                                               WHERE s.room_id = i.room_id AND s.date = i.date), 0)::int,
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'confirmed'
                       AND b.start_date <= i.date AND b.end_date > i.date),
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'held'
                       AND b.start_date <= i.date AND b.end_date > i.date),
                    (SELECT count(*) FROM bookings b
                     WHERE b.room_id = i.room_id AND b.status = 'confirmed'
                       AND b.confirmed_at > b.expires_at
                       AND b.start_date <= i.date AND b.end_date > i.date)
             FROM inventory i
             WHERE i.room_id = $1 AND i.date >= $2 AND i.date < $3
             ORDER BY i.date",
                )
                .bind(room.get())
                .bind(stay.from())
                .bind(stay.to())
                .fetch_all(&self.pool)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(night, total_inventory, booked_count, confirmed_bookings, held, late)| {
                    NightState {
                        room,
                        night,
                        total_inventory,
                        booked_count,
                        confirmed_bookings,
                        held_bookings: held,
                        confirmed_after_expiry: late,
                    }
                },
            )
            .collect())
    }

    /// One booking by its id, if it exists.
    pub async fn booking(&self, id: i64) -> Result<Option<BookingRow>, sqlx::Error> {
        self.repeatable(|| {
            sqlx::query_as(
                "SELECT id, user_id, room_id, start_date, end_date, status, created_at
                 FROM bookings WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
        })
        .await
    }

    /// Whether the room exists.
    pub async fn room_exists(&self, room: RoomId) -> Result<bool, sqlx::Error> {
        self.repeatable(|| {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)")
                .bind(room.get())
                .fetch_one(&self.pool)
        })
        .await
    }

    /// A statement that is safe to repeat (a read, a `BEGIN`): on a pooled connection that
    /// turned out dead (its server restarted), once more on another, up to once per pooled
    /// connection (each dead one is closed on its way back: sqlx tests what is released).
    async fn repeatable<T, F, Fut>(&self, statement: F) -> Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let attempts = self.pool.options().get_max_connections() + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            match within(self.limit, statement()).await {
                Err(error) if tries < attempts && is_dead_connection(&error) => {
                    tracing::debug!(%error, "a pooled connection was dead; taking another");
                }
                other => return other,
            }
        }
    }

    /// A round trip to the server, within `limit` (a health check's own, shorter deadline).
    pub async fn ping(&self, limit: Duration) -> Result<(), sqlx::Error> {
        within(
            limit.min(self.limit),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        .map(|_| ())
    }

    /// The backends of this pool's application (its `application_name`, in this database) that
    /// wait for a lock another backend holds, with what they wait for (`wait_event`:
    /// `transactionid`, `tuple`, `advisory`, …). `interleave` gives each run an application name
    /// of its own, so these are its users' and nobody else's.
    pub async fn lock_waits(&self) -> Result<Vec<(i32, String)>, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_as(
                "SELECT pid, coalesce(wait_event, 'lock') FROM pg_stat_activity
                 WHERE datname = current_database()
                   AND application_name = current_setting('application_name')
                   AND pid <> pg_backend_pid()
                   AND cardinality(pg_blocking_pids(pid)) > 0
                 ORDER BY pid",
            )
            .fetch_all(&self.pool),
        )
        .await
    }

    /// How many more client connections the server accepts right now (never negative).
    pub async fn spare_connections(&self) -> Result<u32, sqlx::Error> {
        let spare: i64 = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT current_setting('max_connections')::bigint
                  - current_setting('superuser_reserved_connections')::bigint
                  - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
            )
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(u32::try_from(spare.max(0)).unwrap_or(u32::MAX))
    }

    /// Claims one night for the lock holder with fencing token `token`, in its own short
    /// statement (not inside the booking's transaction, which would hold the row lock and turn
    /// this into `row-lock`). Only a token newer than every earlier claim is taken; an equal or
    /// older one gets [`Claim::Behind`] with the newest the night has seen — so two holders can
    /// never both own the same token, even after Redis lost its counter and hands one out
    /// again.
    pub async fn claim_fence(
        &self,
        room: RoomId,
        night: NaiveDate,
        token: i64,
    ) -> Result<Claim, BookingError> {
        let claimed: Option<i64> = within(
            self.limit,
            sqlx::query_scalar(
                "UPDATE inventory SET fence_token = $3
                 WHERE room_id = $1 AND date = $2 AND fence_token < $3
                 RETURNING fence_token",
            )
            .bind(room.get())
            .bind(night)
            .bind(token)
            .fetch_optional(&self.pool),
        )
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let stored: Option<i64> = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT fence_token FROM inventory WHERE room_id = $1 AND date = $2",
            )
            .bind(room.get())
            .bind(night)
            .fetch_optional(&self.pool),
        )
        .await?;
        match stored {
            Some(stored) => Ok(Claim::Behind { stored }),
            None => Err(InputError::NoInventory { room, night }.into()),
        }
    }

    /// Chaos: terminates the backend of one booking transaction of this database that is open
    /// and idle (a user in its hold). Returns its pid, if there was one.
    pub async fn terminate_one_open_booking(&self) -> Result<Option<i32>, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                // The victim is chosen in a subquery with LIMIT, which PostgreSQL cannot flatten:
                // in one WHERE clause, the planner may call pg_terminate_backend before the other
                // conditions and kill backends that do not match them.
                "SELECT pid FROM (
                 SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'booking-cli'
                   AND state = 'idle in transaction' AND pid <> pg_backend_pid()
                 LIMIT 1
             ) AS victim
             WHERE pg_terminate_backend(pid)",
            )
            .fetch_optional(&self.pool),
        )
        .await
    }

    /// Starts the transaction of one booking (READ COMMITTED, PostgreSQL's default).
    ///
    /// A pooled connection whose server went away (a restart, an idle timeout) fails its
    /// `BEGIN` — before anything of the booking was sent — and is closed on its way back to the
    /// pool (sqlx tests every released connection). So another is taken, up to once per pooled
    /// connection: a restart costs the bookings nothing instead of one failure per connection.
    pub async fn begin(&self) -> Result<BookingTx, sqlx::Error> {
        let tx = self.repeatable(|| self.pool.begin()).await?;
        Ok(BookingTx {
            tx,
            limit: self.limit,
        })
    }
}

/// The statement that books a whole stay at once, all nights or none (`one-statement`, and
/// `reserve`'s hold). Parameters: room, first night, day of departure, number of nights, user,
/// status (`confirmed` or `held`), the hold's lifetime in milliseconds (NULL: no expiry).
///
/// Why it cannot oversell, under READ COMMITTED:
/// - `stay` locks every night's row, in date order (so two stays that share nights take them
///   in the same order and cannot deadlock). A row another transaction is updating makes it
///   wait; once that one commits, PostgreSQL re-reads the row and returns its **newest**
///   version. So `verdict` judges every night on committed counts no other booking can change
///   before this statement ends — the check and the write are one critical section per night,
///   as in `row-lock`, without a round trip between them.
/// - `claimed` increments every night only if every night was free (all or none). Its snapshot
///   is the statement's, older than the rows `stay` waited for; PostgreSQL then re-applies the
///   update to the newest version (`booked_count + 1` on the committed count), under the lock
///   `stay` already holds.
/// - `booked` inserts the booking only if the nights were claimed.
///
/// One row comes back always: the new booking's id (or NULL), the nights found, and the first
/// full night (or NULL).
const BOOK_STAY: &str = "
WITH stay AS MATERIALIZED (
    SELECT date, booked_count, total_inventory FROM inventory
    WHERE room_id = $1 AND date >= $2 AND date < $3
    ORDER BY date
    FOR UPDATE
), verdict AS (
    SELECT count(*) AS nights,
           min(date) FILTER (WHERE booked_count >= total_inventory) AS full_night
    FROM stay
), claimed AS (
    UPDATE inventory i SET booked_count = i.booked_count + 1
    FROM verdict v
    WHERE i.room_id = $1 AND i.date >= $2 AND i.date < $3
      AND v.nights = $4 AND v.full_night IS NULL
    RETURNING i.date
), booked AS (
    INSERT INTO bookings (user_id, room_id, start_date, end_date, status, expires_at)
    SELECT $5, $1, $2, $3, $6,
           clock_timestamp() + make_interval(secs => $7::double precision / 1000)
    WHERE EXISTS (SELECT 1 FROM claimed)
    RETURNING id
)
SELECT (SELECT id FROM booked), v.nights, v.full_night FROM verdict v";

/// [`BOOK_STAY`] for a stay of one night, with the same parameters: one conditional update,
/// whose condition PostgreSQL re-evaluates on the newest version of the row after waiting for
/// a concurrent writer (as `atomic`'s), feeding the insert. With one night there is no
/// all-or-none to enforce, so no row is locked before it is written: the statement does half
/// the row work of the general one. No row comes back when the night was full (or has no
/// inventory row).
const BOOK_NIGHT: &str = "
WITH claimed AS (
    UPDATE inventory SET booked_count = booked_count + 1
    WHERE room_id = $1 AND date = $2 AND booked_count < total_inventory
    RETURNING date
)
INSERT INTO bookings (user_id, room_id, start_date, end_date, status, expires_at)
SELECT $5, $1, $2, $3, $6, clock_timestamp() + make_interval(secs => $7::double precision / 1000)
FROM claimed
RETURNING id";

/// What [`Repo::book_stay`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Every night was free: the booking (or hold) with this id exists.
    Booked { booking_id: i64 },
    /// This night was full; nothing was written.
    Full { night: NaiveDate },
}

impl Repo {
    /// Books (or holds) a whole stay in one statement, all nights or none: see [`BOOK_STAY`]
    /// (and [`BOOK_NIGHT`] for a single night). For one night, [`Claimed::Full`] may also
    /// mean that the night has no inventory row: a caller that must tell them apart asks
    /// [`Repo::ensure_bookable`] (one more round trip, on refusals only).
    /// `hold` gives the booking status `held` and an expiry that far ahead.
    pub async fn book_stay(
        &self,
        request: &BookingRequest,
        hold: Option<Duration>,
    ) -> Result<Claimed, BookingError> {
        let (status, ttl_ms) = match hold {
            Some(ttl) => ("held", Some(ttl.as_millis() as f64)),
            None => ("confirmed", None),
        };
        if request.stay.len() == 1 {
            let id: Option<i64> = within(
                self.limit,
                sqlx::query_scalar(BOOK_NIGHT)
                    .bind(request.room.get())
                    .bind(request.stay.from())
                    .bind(request.stay.to())
                    .bind(1_i64)
                    .bind(request.user.as_uuid())
                    .bind(status)
                    .bind(ttl_ms)
                    .fetch_optional(&self.pool),
            )
            .await?;
            return Ok(match id {
                Some(booking_id) => Claimed::Booked { booking_id },
                None => Claimed::Full {
                    night: request.stay.from(),
                },
            });
        }
        let (id, nights, full): (Option<i64>, i64, Option<NaiveDate>) = within(
            self.limit,
            sqlx::query_as(BOOK_STAY)
                .bind(request.room.get())
                .bind(request.stay.from())
                .bind(request.stay.to())
                .bind(i64::from(request.stay.len()))
                .bind(request.user.as_uuid())
                .bind(status)
                .bind(ttl_ms)
                .fetch_one(&self.pool),
        )
        .await?;
        match (id, full) {
            (Some(booking_id), _) => Ok(Claimed::Booked { booking_id }),
            (None, Some(night)) => Ok(Claimed::Full { night }),
            (None, None) => {
                // Free, but not every night has a row: the first missing one is the error.
                debug_assert!(nights < i64::from(request.stay.len()));
                self.ensure_bookable(request.room, &request.stay).await?;
                Err(BookingError::Inconsistent(format!(
                    "room {} has {nights} of {} inventory rows for {}",
                    request.room,
                    request.stay.len(),
                    request.stay
                )))
            }
        }
    }
}

/// `reserve`: reclaims the expired holds that overlap a stay, giving back every night of each
/// (all their nights, not only the stay's), and counts the live holds on one night. Two
/// reclaimers of the same hold cannot both give it back: the second one's update waits for the
/// first, re-reads the row, finds it no longer `held` and skips it. Several expired holds on
/// one night are given back in one update of its row (a row is updated once per statement).
/// Parameters: room, first night, day of departure, the night to count live holds on.
const RECLAIM_HOLDS: &str = "
WITH expired AS (
    UPDATE bookings SET status = 'expired'
    WHERE room_id = $1 AND status = 'held' AND expires_at <= clock_timestamp()
      AND start_date < $3 AND end_date > $2
    RETURNING start_date, end_date
), nights AS (
    SELECT d::date AS date, count(*) AS holds
    FROM expired, generate_series(expired.start_date, expired.end_date - 1, interval '1 day') AS d
    GROUP BY 1
), given_back AS (
    UPDATE inventory i SET booked_count = i.booked_count - n.holds
    FROM nights n
    WHERE i.room_id = $1 AND i.date = n.date
    RETURNING i.date
)
SELECT (SELECT count(*) FROM expired),
       (SELECT count(*) FROM bookings
        WHERE room_id = $1 AND status = 'held' AND expires_at > clock_timestamp()
          AND start_date <= $4 AND end_date > $4),
       (SELECT count(*) FROM inventory WHERE room_id = $1 AND date >= $2 AND date < $3)";

/// `reserve`: ends one hold — `cancelled` (its payment failed) or `expired` (it outlived its
/// expiry) — and gives its nights back, in one statement; nothing when it is no longer held
/// (a reclaimer ended it first).
const RELEASE_HOLD: &str = "
WITH released AS (
    UPDATE bookings SET status = $2
    WHERE id = $1 AND status = 'held'
    RETURNING room_id, start_date, end_date
)
UPDATE inventory i SET booked_count = i.booked_count - 1
FROM released r
WHERE i.room_id = r.room_id AND i.date >= r.start_date AND i.date < r.end_date";

/// `reserve`: confirms one hold if it is still held and has not expired, at one instant (the
/// time checked is the time recorded, so a confirmation is never recorded after its expiry).
const CONFIRM_HOLD: &str = "
WITH now AS (SELECT clock_timestamp() AS t)
UPDATE bookings b SET status = 'confirmed', confirmed_at = now.t
FROM now
WHERE b.id = $1 AND b.status = 'held' AND b.expires_at > now.t";

/// How a hold ended without a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Its payment failed.
    Cancelled,
    /// It outlived its expiry.
    Expired,
}

impl Repo {
    /// Reclaims expired holds over `stay` (see [`RECLAIM_HOLDS`]): how many were reclaimed,
    /// how many live holds cover `night`, and how many nights of the stay have an inventory
    /// row (fewer than the stay's: a bad stay, not a full one).
    pub async fn reclaim_holds(
        &self,
        room: RoomId,
        stay: &Stay,
        night: NaiveDate,
    ) -> Result<(i64, i64, i64), sqlx::Error> {
        within(
            self.limit,
            sqlx::query_as(RECLAIM_HOLDS)
                .bind(room.get())
                .bind(stay.from())
                .bind(stay.to())
                .bind(night)
                .fetch_one(&self.pool),
        )
        .await
    }

    /// Prepares the statements of `one-statement`, `reserve`, `sharded` and `batched` on up to
    /// `n` pooled connections
    /// before a race, by running each once on nothing: room 0 and booking 0 cannot exist (ids
    /// are positive), so nothing is read or written. Otherwise each user's first booking would
    /// also parse and plan them, all users at the same instant on the server's cores — the
    /// start of a race is what the reference run measures.
    pub async fn warm_statements(&self, n: u32) -> Result<(), sqlx::Error> {
        let n = n.min(self.pool.options().get_max_connections());
        let mut held = Vec::with_capacity(n as usize);
        for _ in 0..n {
            held.push(within(self.limit, self.pool.acquire()).await?);
        }
        let night = NaiveDate::default();
        for connection in &mut held {
            for sql in [BOOK_NIGHT, BOOK_STAY] {
                within(
                    self.limit,
                    sqlx::query(sql)
                        .bind(0_i32)
                        .bind(night)
                        .bind(night)
                        .bind(1_i64)
                        .bind(uuid::Uuid::nil())
                        .bind("held")
                        .bind(Some(1.0_f64))
                        .execute(&mut **connection),
                )
                .await?;
            }
            for sql in [
                shards::TAKE_FREE_SHARD,
                shards::TAKE_FREE_SHARD_OF_NIGHT,
                shards::WAIT_FOR_SHARD,
            ] {
                within(
                    self.limit,
                    sqlx::query(sql)
                        .bind(0_i32)
                        .bind(night)
                        .bind(night)
                        .bind(1_i64)
                        .bind(uuid::Uuid::nil())
                        .execute(&mut **connection),
                )
                .await?;
            }
            within(
                self.limit,
                sqlx::query(batch::BOOK_BATCH)
                    .bind(0_i32)
                    .bind(night)
                    .bind(night)
                    .bind(1_i64)
                    .bind(&[uuid::Uuid::nil()][..])
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(RECLAIM_HOLDS)
                    .bind(0_i32)
                    .bind(night)
                    .bind(night)
                    .bind(night)
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(CONFIRM_HOLD)
                    .bind(0_i64)
                    .execute(&mut **connection),
            )
            .await?;
            within(
                self.limit,
                sqlx::query(RELEASE_HOLD)
                    .bind(0_i64)
                    .bind("cancelled")
                    .execute(&mut **connection),
            )
            .await?;
        }
        Ok(())
    }

    /// Confirms hold `id`; `false` when it had expired (or was no longer held).
    pub async fn confirm_hold(&self, id: i64) -> Result<bool, sqlx::Error> {
        let confirmed = within(
            self.limit,
            sqlx::query(CONFIRM_HOLD).bind(id).execute(&self.pool),
        )
        .await?
        .rows_affected();
        Ok(confirmed == 1)
    }

    /// Ends hold `id` and gives its nights back; `false` when it was no longer held.
    pub async fn release_hold(&self, id: i64, end: HoldEnd) -> Result<bool, sqlx::Error> {
        let status = match end {
            HoldEnd::Cancelled => "cancelled",
            HoldEnd::Expired => "expired",
        };
        let nights = within(
            self.limit,
            sqlx::query(RELEASE_HOLD)
                .bind(id)
                .bind(status)
                .execute(&self.pool),
        )
        .await?
        .rows_affected();
        Ok(nights > 0)
    }
}

/// The transaction of one booking, driven step by step by a strategy. Dropping it without
/// [`commit`](BookingTx::commit) rolls it back.
pub struct BookingTx {
    tx: Transaction<'static, Postgres>,
    /// The client-side deadline of every statement.
    limit: Duration,
}

impl BookingTx {
    /// The availability check: reads every night of the stay. A night without an inventory row
    /// is an input error, never "available": [`InputError::UnknownRoom`] when the room does not
    /// exist, else [`InputError::NoInventory`].
    ///
    /// This is a plain read: nothing stops another transaction from reading the same
    /// `booked_count` at the same time. That is the race the naive strategy demonstrates.
    pub async fn availability(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<Availability, BookingError> {
        let rows: Vec<(NaiveDate, Option<i32>, Option<i32>)> = within(
            self.limit,
            sqlx::query_as(
                "SELECT d::date, i.total_inventory, i.booked_count
             FROM generate_series($2::date, $3::date - 1, interval '1 day') AS d
             LEFT JOIN inventory i ON i.room_id = $1 AND i.date = d::date
             ORDER BY d",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .fetch_all(&mut *self.tx),
        )
        .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for (night, total, booked) in rows {
            let (Some(total), Some(booked)) = (total, booked) else {
                // Bad input only: one more round trip to say which it is.
                let room_exists: bool = within(
                    self.limit,
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)")
                        .bind(room.get())
                        .fetch_one(&mut *self.tx),
                )
                .await?;
                return Err(if room_exists {
                    InputError::NoInventory { room, night }
                } else {
                    InputError::UnknownRoom { room }
                }
                .into());
            };
            if booked >= total {
                return Ok(Availability::SoldOut { night });
            }
            counts.push((night, booked));
        }
        Ok(Availability::Free { booked: counts })
    }

    /// `booked_count = booked_count + 1` on every night of the stay. The increment itself is
    /// atomic in the database; what makes the naive flow unsafe is that the *decision* to
    /// increment was taken on a value read earlier.
    pub async fn increment_booked(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<(), BookingError> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date >= $2 AND date < $3",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        if updated != u64::from(stay.len()) {
            // The check saw a row for every night; only a concurrent `db reset` removes rows.
            return Err(BookingError::Inconsistent(format!(
                "expected to update {} inventory rows of room {room}, updated {updated}",
                stay.len()
            )));
        }
        Ok(())
    }

    /// Makes this transaction SERIALIZABLE; must be its first statement.
    pub async fn set_serializable(&mut self) -> Result<(), sqlx::Error> {
        within(
            self.limit,
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").execute(&mut *self.tx),
        )
        .await
        .map(|_| ())
    }

    /// `SELECT … FOR UPDATE` on every night's inventory row, in date order: from here to the
    /// end of the transaction, every other transaction that wants these rows waits.
    pub async fn lock_nights_for_update(
        &mut self,
        room: RoomId,
        stay: &Stay,
    ) -> Result<(), sqlx::Error> {
        within(
            self.limit,
            sqlx::query(
                "SELECT 1 FROM inventory
             WHERE room_id = $1 AND date >= $2 AND date < $3
             ORDER BY date FOR UPDATE",
            )
            .bind(room.get())
            .bind(stay.from())
            .bind(stay.to())
            .execute(&mut *self.tx),
        )
        .await
        .map(|_| ())
    }

    /// Takes the transaction-scoped advisory lock of one room-night (released at commit or
    /// rollback). Advisory locks are shared by every application of the database, so the key is
    /// not a bare (room, day) pair another application might use too: it is the 64-bit hash of
    /// `booking_cli:room:{room}:{night}`, a key no other application would choose.
    pub async fn advisory_lock_night(
        &mut self,
        room: RoomId,
        night: NaiveDate,
    ) -> Result<(), sqlx::Error> {
        within(
            self.limit,
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("booking_cli:room:{room}:{night}"))
                .execute(&mut *self.tx),
        )
        .await
        .map(|_| ())
    }

    /// Writes `booked_count = value` on one night: a blind write of a value computed from an
    /// earlier read (the lost-update anti-pattern).
    pub async fn set_booked(
        &mut self,
        room: RoomId,
        night: NaiveDate,
        value: i32,
    ) -> Result<(), sqlx::Error> {
        within(
            self.limit,
            sqlx::query("UPDATE inventory SET booked_count = $3 WHERE room_id = $1 AND date = $2")
                .bind(room.get())
                .bind(night)
                .bind(value)
                .execute(&mut *self.tx),
        )
        .await
        .map(|_| ())
    }

    /// The check and the write as one statement: increments one night only if it still has a
    /// room. PostgreSQL re-evaluates the condition on the newest row version after waiting for
    /// a concurrent writer, so two transactions can never both take the last room. Returns
    /// whether the night was taken; a missing inventory row is an input error.
    pub async fn increment_if_free(
        &mut self,
        room: RoomId,
        night: NaiveDate,
    ) -> Result<bool, BookingError> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date = $2 AND booked_count < total_inventory",
            )
            .bind(room.get())
            .bind(night)
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(true);
        }
        let exists: bool = within(
            self.limit,
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM inventory WHERE room_id = $1 AND date = $2)",
            )
            .bind(room.get())
            .bind(night)
            .fetch_one(&mut *self.tx),
        )
        .await?;
        if exists {
            Ok(false)
        } else {
            Err(InputError::NoInventory { room, night }.into())
        }
    }

    /// The fenced write: increments one night only if no holder with a newer token has claimed
    /// it since this holder did. Returns whether the write was accepted.
    pub async fn increment_if_fenced(
        &mut self,
        room: RoomId,
        night: NaiveDate,
        token: i64,
    ) -> Result<bool, sqlx::Error> {
        let updated = within(
            self.limit,
            sqlx::query(
                "UPDATE inventory SET booked_count = booked_count + 1
             WHERE room_id = $1 AND date = $2 AND fence_token = $3",
            )
            .bind(room.get())
            .bind(night)
            .bind(token)
            .execute(&mut *self.tx),
        )
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Inserts the `confirmed` booking row and returns its id.
    pub async fn insert_booking(&mut self, req: &BookingRequest) -> Result<i64, sqlx::Error> {
        within(
            self.limit,
            sqlx::query_scalar(
                "INSERT INTO bookings (user_id, room_id, start_date, end_date, status)
             VALUES ($1, $2, $3, $4, 'confirmed')
             RETURNING id",
            )
            .bind(req.user.as_uuid())
            .bind(req.room.get())
            .bind(req.stay.from())
            .bind(req.stay.to())
            .fetch_one(&mut *self.tx),
        )
        .await
    }

    /// Commits within the deadline. A commit that times out may still have been applied — the
    /// server may have received it and be about to answer — so the caller reports an error,
    /// and the verdict, read from the database afterwards, shows what really happened.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        within(self.limit, self.tx.commit()).await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        within(self.limit, self.tx.rollback()).await
    }
}
