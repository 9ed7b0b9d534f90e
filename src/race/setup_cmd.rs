//! `--setup-cmd CMD`: a way back to the start for a store that speaks no SQL — a file, an
//! API, a queue. Each command runs with `sh -c` before each run (after `--setup`), within the
//! check time-out; a command that fails stops the race (exit 1) with the tail of its stderr.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The most of a failed command's stderr shown.
const TAIL: usize = 400;

/// Why a setup command stopped the race.
#[derive(Debug, thiserror::Error)]
pub enum SetupCmdError {
    #[error("--setup-cmd '{cmd}' could not start: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--setup-cmd '{cmd}' {how}{}", if .tail.is_empty() { String::new() } else { format!(": {}", .tail) })]
    Failed {
        cmd: String,
        how: String,
        tail: String,
    },
}

/// Runs every command in order, each within `deadline`; the first that fails ends it.
pub async fn run_all(commands: &[String], deadline: Duration) -> Result<(), SetupCmdError> {
    for cmd in commands {
        run(cmd, deadline).await?;
    }
    Ok(())
}

async fn run(cmd: &str, deadline: Duration) -> Result<(), SetupCmdError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A command past its deadline is killed, not left running behind the race.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SetupCmdError::Spawn {
            cmd: cmd.to_owned(),
            source,
        })?;
    let mut stderr = child.stderr.take();
    let work = async {
        let mut err = Vec::new();
        if let Some(pipe) = stderr.as_mut() {
            // What cannot be read is not shown; the status still says how it ended.
            let _ = pipe.read_to_end(&mut err).await;
        }
        (child.wait().await, err)
    };
    let failed = |how: String, err: &[u8]| SetupCmdError::Failed {
        cmd: cmd.to_owned(),
        how,
        tail: tail(err),
    };
    match tokio::time::timeout(deadline, work).await {
        Err(_) => Err(failed(
            format!(
                "did not finish within {} (--check-timeout)",
                humantime::format_duration(deadline)
            ),
            &[],
        )),
        Ok((Err(e), err)) => Err(failed(format!("could not be waited for: {e}"), &err)),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), err)) => Err(failed(
            match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            },
            &err,
        )),
    }
}

/// The last [`TAIL`] bytes of `err`, on one line.
fn tail(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let skip = line.chars().count().saturating_sub(TAIL);
    let tail: String = line.chars().skip(skip).collect();
    if skip > 0 { format!("…{tail}") } else { tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_fails_is_named_with_the_tail_of_its_stderr() {
        let long = Duration::from_secs(5);
        assert!(run_all(&["true".to_owned()], long).await.is_ok());
        let error = run_all(
            &["true".to_owned(), "echo nope >&2; exit 3".to_owned()],
            long,
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "--setup-cmd 'echo nope >&2; exit 3' exited with status 3: nope"
        );
        let slow = run_all(&["sleep 5".to_owned()], Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(slow.contains("did not finish within 50ms"), "{slow}");
    }
}
