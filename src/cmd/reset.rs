//! `db reset`: create the database if missing, recreate the `booking_cli` schema, seed the hotel.
//! `db drop`: remove the schema and every Redis key under the prefix, and nothing else.

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{DropArgs, ResetArgs};
use crate::config::Connection;
use crate::db;
use crate::exit::{Exit, surface_db};

use super::finish_output;

/// `db reset --json`.
#[derive(Debug, Serialize)]
struct ResetJson<'a> {
    database: &'a str,
    created_database: bool,
    migrations: usize,
    rooms: u64,
    inventory_rows: u64,
    /// Rows of `inventory_shards`: every night's rooms split over `--shards` shards.
    shard_rows: u64,
}

/// `db drop --json`.
#[derive(Debug, Serialize)]
struct DropJson<'a> {
    database: &'a str,
    schema_dropped: bool,
    /// `null` when Redis did not answer (nothing was deleted there).
    redis_keys_deleted: Option<u64>,
}

pub async fn run(connection: &Connection, args: &ResetArgs) -> anyhow::Result<Exit> {
    let plan = db::reference_hotel()
        .with_rooms(args.rooms)
        .with_shards(args.shards);
    let report = db::reset(&connection.database_url, &plan, connection.db_timeout)
        .await
        .map_err(surface_db)
        .with_context(|| {
            format!(
                "failed to reset the database at DATABASE_URL {}",
                connection.database_display()
            )
        })?;
    if args.json {
        let json = ResetJson {
            database: &report.database,
            created_database: report.created_database,
            migrations: report.migrations,
            rooms: report.seed.rooms,
            inventory_rows: report.seed.inventory_rows,
            shard_rows: report.seed.shard_rows,
        };
        finish_output(crate::report::write_json(
            &mut std::io::stdout().lock(),
            &json,
        ))?;
        return Ok(Exit::Success);
    }
    let created = if report.created_database {
        "created database"
    } else {
        "reset database"
    };
    println!(
        "{created} {} at {}: applied {} migration(s), seeded {} rooms and {} inventory rows{} (room 1 has 1 room left on 2024-12-25)",
        report.database,
        connection.database_display(),
        report.migrations,
        report.seed.rooms,
        report.seed.inventory_rows,
        match args.shards {
            0 => String::new(),
            k => format!(", each night's rooms split over {k} shards for --mode sharded"),
        },
    );
    Ok(Exit::Success)
}

/// Drops the schema first (it refuses when others depend on it, and then nothing is removed
/// anywhere), then the Redis keys.
pub async fn drop(connection: &Connection, args: &DropArgs) -> anyhow::Result<Exit> {
    let report = db::drop(&connection.database_url, connection.db_timeout)
        .await
        .map_err(surface_db)
        .with_context(|| {
            format!(
                "failed to drop booking-cli's schema at DATABASE_URL {}",
                connection.database_display()
            )
        })?;
    let prefix = &connection.lock_key_prefix;
    let deleted = match super::lock_service(connection).await {
        Ok(lock) => lock.delete_all().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let keys = deleted.as_ref().ok().copied();
    if args.json {
        let json = DropJson {
            database: &report.database,
            schema_dropped: report.schema_dropped,
            redis_keys_deleted: keys,
        };
        finish_output(crate::report::write_json(
            &mut std::io::stdout().lock(),
            &json,
        ))?;
    } else {
        let schema = if report.schema_dropped {
            format!(
                "dropped schema {} in database {}",
                db::SCHEMA,
                report.database
            )
        } else {
            format!("no schema {} in database {}", db::SCHEMA, report.database)
        };
        let redis = match keys {
            Some(n) => format!("; deleted {n} Redis key(s) under '{prefix}'"),
            None => String::new(),
        };
        println!("{schema}{redis}");
    }
    match deleted {
        Ok(_) => Ok(Exit::Success),
        Err(why) => {
            eprintln!(
                "error: Redis at REDIS_URL {} did not answer, so its keys under '{prefix}' are still there: {why}",
                connection.redis_display()
            );
            Ok(Exit::RuntimeError)
        }
    }
}
