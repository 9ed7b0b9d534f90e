//! booking-cli's schema: what `db reset` drops, creates, migrates and seeds, and what it
//! refuses to drop (objects of others that depend on it, extensions it did not create).

use super::*;

/// The schema that holds every object booking-cli creates; the statements here name it too.
pub const SCHEMA: &str = "booking_cli";

/// Every object outside [`SCHEMA`] that depends on an object inside it, each with what it
/// depends on: a view on a table someone added to the schema, a column typed with an enum or
/// defaulting to a function created in it. `DROP SCHEMA … CASCADE` would drop those too (a
/// column and its data in someone else's table), so `db reset` and `db drop` refuse instead.
/// `pg_identify_object` gives any object's schema; a view's dependency is its rewrite rule's.
pub(super) const FOREIGN_DEPENDENTS: &str = "
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

/// `db reset`'s first step: the project's tables, then its schema, then the schema again,
/// empty. `DROP TABLE` without `CASCADE` refuses when an object of another schema depends on
/// one of them (a view, a foreign key), so another application's objects are never dropped
/// along with ours; what is left in our schema after that is ours by its name.
///
/// Drops the project's tables, then its schema with whatever else is in it (nothing outside
/// it depends on any of it: checked first, in the same transaction).
pub(super) const DROP_SCHEMA: [&str; 2] = [
    "DROP TABLE IF EXISTS booking_cli.bookings, booking_cli.inventory_shards, booking_cli.inventory,
                          booking_cli.rooms, booking_cli._sqlx_migrations",
    "DROP SCHEMA IF EXISTS booking_cli CASCADE",
];

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

impl Repo {
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
}
