//! The scheduler: runs one ordering of the users' steps, one step at a time, and notices a
//! user blocked in PostgreSQL or on the lock.

use super::*;

/// Where a user is, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Running, on its own, until its next event.
    Running,
    /// At the boundary before this step, waiting for a grant.
    Parked(&'static str),
    /// Blocked in this step, on a PostgreSQL lock (backend `pid`) or on something it announced.
    Blocked {
        step: &'static str,
        on: Blocker,
    },
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Blocker {
    Postgres { pid: i32 },
    Announced,
}

pub(super) struct Scheduler<'a> {
    pub(super) setup: &'a Setup,
    pub(super) events: mpsc::UnboundedReceiver<(usize, Event)>,
    pub(super) gates: Vec<Arc<Gate>>,
    pub(super) states: Vec<State>,
    /// The step a user blocked in, until it completes (for `<... completed>`).
    pub(super) blocked_in: Vec<Option<&'static str>>,
    /// Events of users other than the one being waited for, in the order they came.
    pub(super) pending: Vec<VecDeque<Event>>,
    pub(super) outcomes: Vec<Option<Result<Outcome, String>>>,
    pub(super) lines: Vec<Line>,
    pub(super) blocked_steps: Vec<String>,
    pub(super) aborts: u32,
    pub(super) transcript: bool,
    pub(super) tasks: JoinSet<()>,
}

impl Scheduler<'_> {
    pub(super) async fn run(&mut self, schedule: &[Entry]) -> Result<(), InterleaveError> {
        // Users start one at a time, each up to its first boundary.
        for user in 0..self.setup.users {
            self.spawn(user);
            self.await_user(user, "start").await?;
        }
        let mut queue: VecDeque<Entry> = schedule.iter().copied().collect();
        while !queue.is_empty() {
            self.prune(&mut queue);
            let ready = queue
                .iter()
                .position(|e| self.states[e.user] == State::Parked(e.step));
            match ready {
                Some(index) => {
                    if let Some(entry) = queue.remove(index) {
                        self.grant(entry, false).await?;
                    }
                }
                // Every step left belongs to a blocked (or restarting) user; something that
                // holds what they wait for must still move.
                None if !queue.is_empty() => self.settle_or_wait().await?,
                None => {}
            }
        }
        // The steps the schedule did not name, and the retries of aborted attempts, run to the
        // end, one user at a time.
        while self.states.iter().any(|s| *s != State::Done) {
            let parked = (0..self.setup.users).find_map(|user| match self.states[user] {
                State::Parked(step) => Some(Entry { user, step }),
                _ => None,
            });
            match parked {
                Some(entry) => self.grant(entry, true).await?,
                None => self.settle_or_wait().await?,
            }
        }
        Ok(())
    }

    fn spawn(&mut self, user: usize) {
        let gate = Arc::clone(&self.gates[user]);
        let events = gate.events.clone();
        let strategy = Arc::clone(&self.setup.strategy);
        let request = BookingRequest {
            user: UserId::random(),
            room: self.setup.room,
            stay: self.setup.stay,
        };
        self.tasks.spawn(async move {
            let watcher: Arc<dyn Watcher> = gate;
            let result = steps::watch(watcher, strategy.book(&request)).await;
            let _ = events.send((user, Event::Done(result)));
        });
    }

    /// Drops the schedule's entries that can no longer run: those of a finished user, and those
    /// of a user parked at another step than its next one in the schedule — it went past them
    /// (a sold-out booking skips its write), or it started over after an abort (its retry runs
    /// after the schedule).
    fn prune(&mut self, queue: &mut VecDeque<Entry>) {
        let mut kept = VecDeque::with_capacity(queue.len());
        // Only a user's next entry is compared with where it is parked.
        let mut first = vec![true; self.setup.users];
        for entry in queue.drain(..) {
            let skip = match &self.states[entry.user] {
                State::Done => true,
                State::Parked(step) => first[entry.user] && *step != entry.step,
                _ => false,
            };
            if !skip {
                first[entry.user] = false;
            }
            if skip {
                self.lines.push(Line::Skipped {
                    entry: entry.to_string(),
                });
            } else {
                kept.push_back(entry);
            }
        }
        *queue = kept;
    }

    /// Lets `entry` run, waits until it completes or blocks, then settles the others.
    async fn grant(&mut self, entry: Entry, after: bool) -> Result<(), InterleaveError> {
        self.lines.push(Line::Step {
            entry: entry.to_string(),
            waiting: None,
            after,
            state: None,
        });
        let line = self.lines.len() - 1;
        self.states[entry.user] = State::Running;
        self.gates[entry.user].go.add_permits(1);
        self.await_user(entry.user, entry.step).await?;
        self.settle().await?;
        if self.transcript {
            let nights = self
                .setup
                .repo
                .slot_state(self.setup.room, &self.setup.stay)
                .await?;
            if let Some(Line::Step { state, .. }) = self.lines.get_mut(line) {
                *state = SlotState::of(&nights);
            }
        }
        Ok(())
    }

    /// Waits until `user` (running) is parked, blocked or done. What other users report
    /// meanwhile (a waiter that the step released) is kept for [`settle`](Self::settle), so
    /// that a transcript always shows a step's own end before what it set off, however the
    /// two raced.
    async fn await_user(&mut self, user: usize, step: &'static str) -> Result<(), InterleaveError> {
        let started = Instant::now();
        while let Some(event) = self.pending[user].pop_front() {
            self.apply(user, event)?;
            if self.states[user] != State::Running {
                return Ok(());
            }
        }
        loop {
            match tokio::time::timeout(POLL, self.events.recv()).await {
                Ok(Some((from, event))) if from == user => self.apply(from, event)?,
                Ok(Some((from, event))) => self.pending[from].push_back(event),
                Ok(None) => return Ok(()),
                Err(_) => {
                    if let Some((pid, what)) = self.new_lock_wait(user).await? {
                        self.block(user, step, Blocker::Postgres { pid }, what);
                    }
                }
            }
            if self.states[user] != State::Running {
                return Ok(());
            }
            if started.elapsed() > self.setup.deadline {
                return Err(InterleaveError::Stalled {
                    step: format!("{}.{step}", user_name(user)),
                    waited: self.setup.deadline,
                });
            }
        }
    }

    /// A backend of this run that waits for a PostgreSQL lock and is not known to be another
    /// user's: `user`'s, since only it runs. Its pid and what it waits for.
    async fn new_lock_wait(
        &mut self,
        user: usize,
    ) -> Result<Option<(i32, String)>, InterleaveError> {
        let waits = self.setup.repo.lock_waits().await?;
        // The backends of the users already blocked; a backend is only a user's while it
        // waits (the next step may run on another pooled connection).
        let others: Vec<i32> = self
            .states
            .iter()
            .enumerate()
            .filter(|(u, _)| *u != user)
            .filter_map(|(_, state)| match state {
                State::Blocked {
                    on: Blocker::Postgres { pid },
                    ..
                } => Some(*pid),
                _ => None,
            })
            .collect();
        Ok(waits
            .into_iter()
            .find(|(pid, _)| !others.contains(pid))
            .map(|(pid, event)| {
                let what = match event.as_str() {
                    "transactionid" | "tuple" => format!("a PostgreSQL row lock ({event})"),
                    "advisory" => "a PostgreSQL advisory lock".to_owned(),
                    _ => format!("a PostgreSQL lock ({event})"),
                };
                (pid, what)
            }))
    }

    fn block(&mut self, user: usize, step: &'static str, on: Blocker, what: String) {
        if self.blocked_in[user].is_none() {
            self.blocked_in[user] = Some(step);
            let entry = format!("{}.{step}", user_name(user));
            self.blocked_steps.push(entry.clone());
            // The waiting note goes on the line that started the step.
            if let Some(Line::Step { waiting, .. }) = self
                .lines
                .iter_mut()
                .rev()
                .find(|l| matches!(l, Line::Step { entry: e, .. } if *e == entry))
            {
                *waiting = Some(what);
            }
        }
        self.states[user] = State::Blocked { step, on };
    }

    /// A blocked step that resumed has finished: `<... completed>`.
    fn completed(&mut self, user: usize) {
        if let Some(step) = self.blocked_in[user].take() {
            self.lines.push(Line::Completed {
                entry: format!("{}.{step}", user_name(user)),
            });
        }
    }

    fn apply(&mut self, user: usize, event: Event) -> Result<(), InterleaveError> {
        match event {
            Event::Before(step) => {
                if !self.setup.mode.steps().contains(&step) {
                    return Err(InterleaveError::Undeclared {
                        mode: self.setup.mode,
                        user: user_name(user),
                        step: step.to_owned(),
                        declared: self.setup.mode.steps().join(", "),
                    });
                }
                self.completed(user);
                self.states[user] = State::Parked(step);
            }
            Event::Waiting(what) => {
                let step = match self.states[user] {
                    State::Blocked { step, .. } => step,
                    _ => self.last_step(user).unwrap_or("?"),
                };
                self.block(user, step, Blocker::Announced, what);
            }
            Event::Aborted(reason) => {
                self.completed(user);
                self.aborts += 1;
                self.lines.push(Line::Aborted {
                    user: user_name(user),
                    reason,
                });
                // It sleeps its backoff and begins again: running until its next boundary.
                self.states[user] = State::Running;
            }
            Event::Done(result) => {
                self.completed(user);
                let status = match &result {
                    Ok(outcome) => describe(outcome),
                    Err(error) => format!("error: {error}"),
                };
                self.lines.push(Line::Outcome {
                    user: user_name(user),
                    status,
                });
                self.outcomes[user] = Some(result.map_err(|e| e.to_string()));
                self.states[user] = State::Done;
            }
        }
        Ok(())
    }

    /// The step `user` was last granted (the one it is in).
    fn last_step(&self, user: usize) -> Option<&'static str> {
        let name = user_name(user);
        self.lines.iter().rev().find_map(|line| match line {
            Line::Step { entry, .. } => {
                let (u, step) = entry.split_once('.')?;
                (u.starts_with(name))
                    .then(|| {
                        self.setup
                            .mode
                            .steps()
                            .iter()
                            .find(|s| **s == step)
                            .copied()
                    })
                    .flatten()
            }
            _ => None,
        })
    }

    /// Lets every blocked user that can go on do so, until none can: a PostgreSQL waiter whose
    /// lock was granted runs to its next boundary; a waiter on a Redis lock or a mutex tries
    /// once more. Restarting users are waited for up to their next boundary.
    async fn settle(&mut self) -> Result<(), InterleaveError> {
        loop {
            while let Ok((user, event)) = self.events.try_recv() {
                self.pending[user].push_back(event);
            }
            let mut moved = false;
            let waits: Vec<i32> = if self.states.iter().any(|s| {
                matches!(
                    s,
                    State::Blocked {
                        on: Blocker::Postgres { .. },
                        ..
                    }
                )
            }) {
                self.setup
                    .repo
                    .lock_waits()
                    .await?
                    .into_iter()
                    .map(|(pid, _)| pid)
                    .collect()
            } else {
                Vec::new()
            };
            for user in 0..self.setup.users {
                match self.states[user].clone() {
                    State::Blocked {
                        step,
                        on: Blocker::Postgres { pid },
                    } if !waits.contains(&pid) || !self.pending[user].is_empty() => {
                        self.states[user] = State::Running;
                        self.await_user(user, step).await?;
                        moved = true;
                    }
                    State::Blocked {
                        step,
                        on: Blocker::Announced,
                    } => {
                        self.states[user] = State::Running;
                        self.gates[user].go.add_permits(1);
                        self.await_user(user, step).await?;
                        // Busy again is no move; anything else is.
                        moved |= !matches!(
                            self.states[user],
                            State::Blocked {
                                on: Blocker::Announced,
                                ..
                            }
                        );
                    }
                    State::Running => {
                        let step = self.last_step(user).unwrap_or("retry");
                        self.await_user(user, step).await?;
                        moved = true;
                    }
                    _ => {}
                }
            }
            if !moved {
                return Ok(());
            }
        }
    }

    /// Nothing in the schedule can run now: settle, and if nothing moved, wait for the next
    /// event (a deadlock PostgreSQL breaks, a restart) within the deadline.
    async fn settle_or_wait(&mut self) -> Result<(), InterleaveError> {
        let before = self.states.clone();
        self.settle().await?;
        if self.states != before {
            return Ok(());
        }
        match tokio::time::timeout(self.setup.deadline, self.events.recv()).await {
            Ok(Some((user, event))) => {
                self.pending[user].push_back(event);
                self.settle().await
            }
            Ok(None) => Ok(()),
            Err(_) => Err(InterleaveError::Stalled {
                step: "the schedule".to_owned(),
                waited: self.setup.deadline,
            }),
        }
    }
}
