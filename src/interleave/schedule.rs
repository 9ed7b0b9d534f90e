//! Schedules: which user runs which step, in which order.
//!
//! Users are named `a`, `b`, `c`; a step is `user.step` (`a.check`). A schedule keeps each
//! user's own steps in the strategy's order; what it interleaves is the users. Every ordering
//! of two users with `n` steps each is one of `C(2n, n)` sequences — 20 for naive's three
//! steps, 924 for fenced's six.

use std::fmt;

use crate::error::InputError;
use crate::strategy::Mode;

/// The users' names, in order.
pub const USER_NAMES: [char; 3] = ['a', 'b', 'c'];

/// One step of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Index into [`USER_NAMES`].
    pub user: usize,
    pub step: &'static str,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", user_name(self.user), self.step)
    }
}

/// `a`, `b`, `c`.
pub fn user_name(user: usize) -> char {
    USER_NAMES.get(user).copied().unwrap_or('?')
}

/// A schedule as one line: `a.check b.check a.write …`.
pub fn display(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(Entry::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `--schedule` for `users` users of `mode`. Each user's named steps must be the first
/// ones of the strategy's steps, in order; steps not named run after the schedule.
pub fn parse(text: &str, mode: Mode, users: usize) -> Result<Vec<Entry>, InputError> {
    let steps = mode.steps();
    let names: Vec<char> = USER_NAMES.iter().copied().take(users).collect();
    let order = steps.join(" → ");
    let mut next = vec![0usize; users];
    let mut entries = Vec::new();
    for token in text.split(|c: char| c.is_whitespace() || c == ',') {
        if token.is_empty() {
            continue;
        }
        let Some((user, step)) = token.split_once('.') else {
            return Err(InputError::Invalid(format!(
                "--schedule: '{token}' is not USER.STEP (e.g. a.{})",
                steps[0]
            )));
        };
        let Some(user) = names
            .iter()
            .position(|n| user.len() == 1 && user.starts_with(*n))
        else {
            return Err(InputError::Invalid(format!(
                "--schedule: unknown user '{user}' in '{token}' (with --users {users}: {})",
                names
                    .iter()
                    .map(char::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let Some(index) = steps.iter().position(|s| *s == step) else {
            return Err(InputError::Invalid(format!(
                "--schedule: {mode} has no step '{step}' in '{token}' (its steps: {order})"
            )));
        };
        if index != next[user] {
            let expected = steps
                .get(next[user])
                .map(|s| format!("{}.{s}", names[user]))
                .unwrap_or_else(|| format!("nothing ({} has run every step)", names[user]));
            return Err(InputError::Invalid(format!(
                "--schedule breaks {}'s own order at '{token}': the next step of {} is {expected} ({mode}: {order})",
                names[user], names[user]
            )));
        }
        next[user] += 1;
        entries.push(Entry {
            user,
            step: steps[index],
        });
    }
    if entries.is_empty() {
        return Err(InputError::Invalid(
            "--schedule is empty: give steps like \"a.check b.check a.write\"".to_owned(),
        ));
    }
    Ok(entries)
}

/// How many orderings `users` users of `steps` steps each have: (users·steps)! / (steps!)^users,
/// or `None` when that does not fit in a `u64`.
pub fn count(users: usize, steps: usize) -> Option<u64> {
    // The product of binomials C(k·steps, steps) for k = 2..=users, each computed exactly.
    let mut total: u64 = 1;
    for k in 2..=users {
        total = total.checked_mul(binomial(k * steps, steps)?)?;
    }
    Some(total)
}

fn binomial(n: usize, k: usize) -> Option<u64> {
    let mut result: u64 = 1;
    for i in 0..k {
        // result · (n − i) / (i + 1) stays an integer at every step.
        result = result.checked_mul((n - i) as u64)? / (i as u64 + 1);
    }
    Some(result)
}

/// Every ordering of `users` users' steps of `mode`, each user's own steps in order, in
/// lexicographic order of the users (`a a a b b b` first).
pub fn all(mode: Mode, users: usize) -> Vec<Vec<Entry>> {
    let steps = mode.steps();
    let mut orderings = Vec::new();
    let mut next = vec![0usize; users];
    let mut current = Vec::with_capacity(users * steps.len());
    extend(steps, &mut next, &mut current, &mut orderings);
    orderings
}

fn extend(
    steps: &'static [&'static str],
    next: &mut [usize],
    current: &mut Vec<Entry>,
    orderings: &mut Vec<Vec<Entry>>,
) {
    if next.iter().all(|&n| n == steps.len()) {
        orderings.push(current.clone());
        return;
    }
    for user in 0..next.len() {
        if next[user] < steps.len() {
            current.push(Entry {
                user,
                step: steps[next[user]],
            });
            next[user] += 1;
            extend(steps, next, current, orderings);
            next[user] -= 1;
            current.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_users_of_three_steps_have_twenty_orderings_each_keeping_its_order() {
        let all = all(Mode::Naive, 2);
        assert_eq!(all.len(), 20);
        assert_eq!(count(2, 3), Some(20));
        assert_eq!(
            display(&all[0]),
            "a.check a.write a.commit b.check b.write b.commit"
        );
        for ordering in &all {
            for user in 0..2 {
                let own: Vec<&str> = ordering
                    .iter()
                    .filter(|e| e.user == user)
                    .map(|e| e.step)
                    .collect();
                assert_eq!(own, Mode::Naive.steps());
            }
        }
        let mut distinct: Vec<String> = all.iter().map(|o| display(o)).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn counts_match_the_enumeration() {
        assert_eq!(all(Mode::Fenced, 2).len() as u64, count(2, 6).unwrap());
        assert_eq!(all(Mode::Naive, 3).len() as u64, count(3, 3).unwrap());
        assert_eq!(count(3, 5), Some(756_756));
    }

    #[test]
    fn a_schedule_parses_into_entries() {
        let entries = parse("a.check b.check, a.write", Mode::Naive, 2).unwrap();
        assert_eq!(display(&entries), "a.check b.check a.write");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let error = |text: &str| parse(text, Mode::Naive, 2).unwrap_err().to_string();
        assert!(error("a.pay").contains("naive has no step 'pay'"));
        assert!(error("c.check").contains("unknown user 'c'"));
        assert!(error("a.write a.check").contains("breaks a's own order at 'a.write'"));
        assert!(error("a.check a.check").contains("the next step of a is a.write"));
        assert!(error("check").contains("is not USER.STEP"));
        assert!(error("  ").contains("empty"));
        assert!(
            error("a.check a.write a.commit a.commit").contains("nothing (a has run every step)")
        );
    }
}
