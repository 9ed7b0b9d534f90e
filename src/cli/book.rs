//! `book`'s flags.

use super::*;

/// `book`: one booking.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  booking-cli book --user 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f --room 1 --from 2024-12-25
  booking-cli book --user 6f1c2d3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f --room 3 --from 2024-12-30 --to 2025-01-02 --mode naive

Exit status: 0 created (201), 3 conflict (409), 1 runtime error, 2 bad input.")]
#[command(next_help_heading = "Booking")]
pub struct BookArgs {
    /// The guest (a UUID)
    #[arg(long, value_name = "UUID", value_parser = clap::value_parser!(UserId))]
    pub user: UserId,

    /// The room type (rooms.id)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(RoomId))]
    pub room: RoomId,

    #[command(flatten)]
    pub stay: StayArgs,

    /// How the booking is protected
    #[arg(long, value_enum, default_value_t = Mode::Locked)]
    pub mode: Mode,

    #[command(flatten)]
    pub work: WorkArgs,

    /// Print the outcome as one JSON object
    #[arg(long)]
    pub json: bool,
}
