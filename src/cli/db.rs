//! `db reset` and `db drop`'s flags.

use super::*;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database if missing, drop the project's tables, migrate and seed the hotel
    ///
    /// Seeds rooms 1-10 over the nights 2024-12-20 to 2025-01-05 with 5 rooms each, except room 1
    /// on 2024-12-25, which has 1 (the reference scenario). Non-interactive and idempotent.
    ///
    /// Example: booking-cli db reset --rooms 1000   # 1,000 one-night slots for a scale run
    Reset(ResetArgs),
    /// Remove everything booking-cli created: the booking_cli schema and every Redis key under
    /// the key prefix (locks, holds, fence counters), and nothing else
    ///
    /// The database itself stays (it may hold other schemas). Refuses, naming them, when objects
    /// outside booking_cli depend on objects in it. Redis that does not answer is said (exit 1)
    /// after the schema is dropped.
    ///
    /// Example: booking-cli db drop --json
    Drop(DropArgs),
}

#[derive(Debug, Args)]
pub struct DropArgs {
    /// Print one JSON object on stdout: {"database", "schema_dropped", "redis_keys_deleted"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// How many room types to seed, ids 1 to TYPES (beyond the ten named ones, "Room 11", …), each
    /// with 5 rooms a night. Not the rooms per night: stress sets those with --inventory
    #[arg(long, value_name = "TYPES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rooms: u32,

    /// Split every night's rooms over this many rows of inventory_shards, which --mode sharded
    /// books on (0: none; stress splits its slot again with its own --shards)
    #[arg(long, value_name = "K", default_value_t = crate::repo::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(0..=1_024))]
    pub shards: u32,

    /// Print one JSON object on stdout: {"database", "created_database", "migrations", "rooms",
    /// "inventory_rows", "shard_rows"}
    #[arg(long)]
    pub json: bool,
}
