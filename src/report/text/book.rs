//! `book` and `strategies` as text.

use super::*;

/// `strategies`: one row per registered strategy.
pub fn write_strategies(out: &mut impl Write, modes: &[Mode]) -> io::Result<()> {
    let mut strategies = table(vec![
        "Strategy",
        "Needs",
        "Expected",
        "Steps",
        "What it does",
    ]);
    for column in strategies.column_iter_mut() {
        column.set_cell_alignment(CellAlignment::Left);
    }
    for mode in modes {
        let spec = mode.spec();
        strategies.add_row(vec![
            spec.name.to_owned(),
            match spec.needs {
                Needs::Postgres => "PostgreSQL",
                Needs::Redis => "+ Redis",
                Needs::Redlock => "+ Redis ×N",
            }
            .to_owned(),
            match spec.shows {
                Shows::Overbooking => "overbooking",
                Shows::Safe => "safe",
                Shows::SafeInOneProcess => "safe in 1 process",
            }
            .to_owned(),
            spec.steps.join(" "),
            spec.summary.to_owned(),
        ]);
    }
    writeln!(out, "{strategies}")
}

/// One line: the status, and the booking id or the reason.
pub fn write_book(out: &mut impl Write, config: &BookConfig, outcome: &Outcome) -> io::Result<()> {
    let r = &config.request;
    match outcome {
        Outcome::Created { booking_id } => writeln!(
            out,
            "201 Created: booking {booking_id} for user {} in room {}, {} ({})",
            r.user, r.room, r.stay, config.mode
        ),
        Outcome::SoldOut { night } => writeln!(
            out,
            "409 Conflict (sold out): room {} has no room left on {night} ({})",
            r.room, config.mode
        ),
        Outcome::LockNotAcquired { key, attempts } => writeln!(
            out,
            "409 Conflict (lock not acquired): {key} stayed held by another booking for {attempts} attempts ({})",
            config.mode
        ),
        Outcome::FencedOut { night } => writeln!(
            out,
            "409 Conflict (stale lock token): the lock on {night} expired and a newer holder claimed it; nothing written ({})",
            config.mode
        ),
        Outcome::LockExpired { key } => writeln!(
            out,
            "409 Conflict (lock expired): {key} stopped being valid before the booking could commit; rolled back ({})",
            config.mode
        ),
        Outcome::OnHold { night } => writeln!(
            out,
            "503 Service Unavailable (rooms on hold): room {} on {night} is sold or on hold, and a hold whose payment fails gives its room back; try again ({})",
            r.room, config.mode
        ),
        Outcome::PaymentFailed => writeln!(
            out,
            "402 Payment Required (payment failed): the hold was cancelled and its nights given back ({})",
            config.mode
        ),
        Outcome::HoldExpired => writeln!(
            out,
            "409 Conflict (hold expired): the payment outlasted the hold; not confirmed, nights given back ({})",
            config.mode
        ),
        Outcome::Interrupted => writeln!(out, "interrupted: nothing was booked ({})", config.mode),
        Outcome::RetriesExhausted { attempts } => writeln!(
            out,
            "409 Conflict (retries exhausted): PostgreSQL aborted the transaction on all {attempts} attempts ({})",
            config.mode
        ),
        Outcome::Acknowledged | Outcome::Declined => {
            writeln!(out, "{} ({})", outcome.kind(), config.mode)
        }
    }
}
