//! The plan of a race on booking-cli's own schema: who books what, and what the run is expected
//! to show. `stress` builds it from its flags; `--processes` workers receive it whole.

use std::time::Duration;

use chrono::Days;

use crate::chaos::Chaos;
use crate::domain::{BookingRequest, RoomId, Stay, UserId};
use crate::error::InputError;
use crate::lock::LockPolicy;
use crate::strategy::{Expectation, Mode, RetryPolicy};

/// A validated `stress` run. Serialisable whole: `--processes` hands it to each worker as one
/// value, so that no setting can be forgotten on the way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StressConfig {
    pub mode: Mode,
    pub users: u32,
    /// The first room; with `rooms > 1`, users are spread over `room`, `room + 1`, ….
    pub room: RoomId,
    pub rooms: u32,
    /// The contested stay (`--from`, `--nights`/`--to`).
    pub stay: Stay,
    /// Users book stays of the same length that start on different nights, all covering the
    /// stay's first night: user `i` starts `i mod nights` nights before `--from`.
    pub mixed_ranges: bool,
    /// `total_inventory` every night of the slot is set to before the run.
    pub inventory: i32,
    /// Shards every night of the slot is split over before the run (`--shards`; `sharded`
    /// books on them).
    #[serde(default = "default_shards")]
    pub shards: u32,
    pub hold: Duration,
    pub lock_policy: LockPolicy,
    pub retry: RetryPolicy,
    /// `reserve`'s simulated payments (`--fail-rate`, `--fail-seed`).
    pub payments: crate::strategy::Payments,
    pub expect: Expectation,
    /// Operating-system processes the users are split over (`--processes`).
    pub processes: u32,
    /// Faults to inject during the run (`--chaos`).
    pub chaos: Vec<Chaos>,
    /// Closed loop for this long (`--duration`): every user books again as soon as its last
    /// booking ended, one night at a time, spread over the rooms and the nights of the stay.
    pub duration: Option<Duration>,
    /// `--target`: how many HTTP servers the users race (0: the strategies run in this
    /// process). Over HTTP, the hold and the lock policy are the servers'.
    pub servers: u32,
    /// `--timeline`, `--trace`, `--report`: record every user's phases.
    pub record: bool,
}

fn default_shards() -> u32 {
    crate::repo::DEFAULT_SHARDS
}

impl StressConfig {
    /// How each booking of this run works and waits (`--hold-ms`, the lock's and the retries'
    /// flags, the payments').
    pub fn tuning(&self) -> crate::strategy::Tuning {
        crate::strategy::Tuning {
            hold: self.hold,
            lock_policy: self.lock_policy,
            retry: self.retry,
            payments: self.payments,
        }
    }

    /// Whether `--chaos` injects `fault` in this run.
    pub fn injects(&self, fault: crate::chaos::Fault) -> bool {
        self.chaos.iter().any(|c| c.fault == fault)
    }

    /// The reference run with `mode`: 20 users, room 1, the night of 2024-12-25 with one room,
    /// 200 ms of work, the reference lock policy (5 s TTL, 10 retries 50 ms apart) and 20
    /// serializable retries — what `stress --mode M` runs without other flags.
    pub fn reference(mode: Mode) -> Self {
        let night = chrono::NaiveDate::from_ymd_opt(2024, 12, 25).unwrap_or(chrono::NaiveDate::MIN);
        Self {
            mode,
            users: 20,
            room: RoomId::new(1).unwrap_or_else(|_| unreachable!("1 is a valid room id")),
            rooms: 1,
            stay: Stay::nights_from(night, 1)
                .unwrap_or_else(|_| unreachable!("one night is a stay")),
            mixed_ranges: false,
            inventory: 1,
            shards: crate::repo::DEFAULT_SHARDS,
            hold: Duration::from_millis(200),
            lock_policy: LockPolicy {
                ttl: Duration::from_secs(5),
                retries: 10,
                retry_delay: Duration::from_millis(50),
                wait: None,
                renew: false,
                replicas: 0,
            },
            retry: RetryPolicy {
                retries: 20,
                backoff: crate::backoff::Backoff {
                    base: Duration::from_millis(20),
                    cap: Duration::from_millis(320),
                },
            },
            payments: crate::strategy::Payments::default(),
            expect: mode.default_expectation(1),
            processes: 1,
            chaos: Vec::new(),
            duration: None,
            servers: 0,
            record: false,
        }
    }

    /// The rooms the users are spread over.
    pub fn rooms(&self) -> impl Iterator<Item = RoomId> + use<> {
        let first = self.room.get();
        (0..self.rooms as i32).filter_map(move |k| RoomId::new(first.saturating_add(k)).ok())
    }

    /// Every night any user books: the stay, widened backwards for mixed ranges. This is what
    /// is prepared before and read after the run.
    pub fn region(&self) -> Result<Stay, InputError> {
        if !self.mixed_ranges {
            return Ok(self.stay);
        }
        let back = u64::from(self.stay.len() - 1);
        let from = self
            .stay
            .from()
            .checked_sub_days(Days::new(back))
            .unwrap_or(self.stay.from());
        Ok(Stay::between(from, self.stay.to())?)
    }

    /// The request of user `i`.
    pub fn request(&self, i: u32) -> BookingRequest {
        let room = RoomId::new(
            self.room
                .get()
                .saturating_add((i % self.rooms.max(1)) as i32),
        )
        .unwrap_or(self.room);
        let stay = if self.mixed_ranges {
            let back = u64::from(i % self.stay.len());
            self.stay
                .from()
                .checked_sub_days(Days::new(back))
                .and_then(|from| Stay::nights_from(from, self.stay.len()).ok())
                .unwrap_or(self.stay)
        } else {
            self.stay
        };
        BookingRequest {
            user: UserId::random(),
            room,
            stay,
        }
    }

    /// Booking `j` of user `i` in a closed loop: one night, rooms and nights taken round-robin
    /// so that concurrent users mostly book different slots.
    pub fn sustained_request(&self, i: u32, j: u32) -> BookingRequest {
        let rooms = self.rooms.max(1);
        let nights = self.stay.len().max(1);
        let room = RoomId::new(self.room.get().saturating_add(((i + j) % rooms) as i32))
            .unwrap_or(self.room);
        let offset = u64::from((i / rooms + j.wrapping_mul(7)) % nights);
        let stay = self
            .stay
            .from()
            .checked_add_days(Days::new(offset))
            .and_then(|from| Stay::nights_from(from, 1).ok())
            .unwrap_or(self.stay);
        BookingRequest {
            user: UserId::random(),
            room,
            stay,
        }
    }

    /// A Redis lock (`locked`, `fenced`, `redlock`) with a fixed retry budget is known to refuse
    /// users while rooms are left: the budget runs out while the lock is still changing hands.
    /// The same policy gets the same judgement, whichever lock it drives; every other strategy
    /// (and a lock with a deadline, `--lock-wait-ms`) is expected not to under-sell.
    pub fn under_selling_expected(&self) -> bool {
        self.mode.waits_with_lock_policy() && self.lock_policy.wait.is_none()
    }
}
