//! `db reset`: create the database if missing, recreate the `booking_cli` schema, seed the hotel.

use anyhow::Context as _;

use crate::app::{Exit, surface_db};
use crate::config::Connection;
use crate::db;

pub async fn run(connection: &Connection, rooms: u32) -> anyhow::Result<Exit> {
    let plan = db::reference_hotel().with_rooms(rooms);
    let report = db::reset(&connection.database_url, &plan, connection.db_timeout)
        .await
        .map_err(surface_db)
        .with_context(|| {
            format!(
                "failed to reset the database at DATABASE_URL {}",
                connection.database_display()
            )
        })?;
    let created = if report.created_database {
        "created database"
    } else {
        "reset database"
    };
    println!(
        "{created} {} at {}: applied {} migration(s), seeded {} rooms and {} inventory rows (room 1 has 1 room left on 2024-12-25)",
        report.database,
        connection.database_display(),
        report.migrations,
        report.seed.rooms,
        report.seed.inventory_rows,
    );
    Ok(Exit::Success)
}
