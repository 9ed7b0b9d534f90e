//! Just enough of PostgreSQL's lexical rules to tell where the statements of a user's SQL
//! begin and end — quotes, dollar quotes, comments — without parsing it: `race --setup` must
//! not end its own transaction (a `COMMIT` inside it would make its writes stick even when the
//! trial then refuses the run), and a `--check` is one statement, with or without a trailing
//! `;` or `-- comment`.

/// The statements of `sql`, split at the `;`s outside quotes and comments, each trimmed;
/// statements that hold nothing but comments and blanks are left out.
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b';' => {
                push(&mut out, &sql[start..i]);
                start = i + 1;
                i + 1
            }
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !word(bytes, i - 1);
                skip_quoted(bytes, i, b'\'', escapes)
            }
            b'"' => skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => line_end(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => block_end(bytes, i),
            b'$' => dollar_end(sql, i),
            _ => i + 1,
        };
    }
    push(&mut out, &sql[start..]);
    out
}

/// The statement's first word, upper-cased, after any comments (`BEGIN`, `SELECT`, …).
pub fn first_word(statement: &str) -> String {
    let code = strip_leading_comments(statement);
    code.split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// Whether the statement ends or opens a transaction (`COMMIT`, `END`, `ROLLBACK`, `ABORT`,
/// `BEGIN`, `START TRANSACTION`, `PREPARE TRANSACTION`, `COMMIT PREPARED`).
pub fn is_transaction_control(statement: &str) -> bool {
    let first = first_word(statement);
    match first.as_str() {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" => true,
        "PREPARE" => {
            strip_leading_comments(statement)
                .to_ascii_uppercase()
                .split_whitespace()
                .nth(1)
                == Some("TRANSACTION")
        }
        _ => false,
    }
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if s.starts_with("--") {
            s = &s[line_end(s.as_bytes(), 0).min(s.len())..];
        } else if s.starts_with("/*") {
            s = &s[block_end(s.as_bytes(), 0).min(s.len())..];
        } else {
            return s;
        }
    }
}

fn push<'a>(out: &mut Vec<&'a str>, statement: &'a str) {
    let trimmed = statement.trim();
    if !strip_leading_comments(trimmed).is_empty() {
        out.push(trimmed);
    }
}

/// Whether the byte at `at` continues a word (so `e'` in `some'` is not an escape string).
fn word(bytes: &[u8], at: usize) -> bool {
    at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
}

fn skip_quoted(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn line_end(bytes: &[u8], at: usize) -> usize {
    bytes[at..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |p| at + p + 1)
}

/// The end of a (nested) block comment opening at `at`.
fn block_end(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0;
    let mut i = at;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of a dollar-quoted string (`$$…$$`, `$tag$…$tag$`) opening at `at`, or the next
/// byte when `$` opens none (a parameter `$1`).
fn dollar_end(sql: &str, at: usize) -> usize {
    let rest = &sql[at + 1..];
    let tag_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let tag = &rest[..tag_len];
    if !rest[tag_len..].starts_with('$') || tag.starts_with(|c: char| c.is_ascii_digit()) {
        return at + 1;
    }
    let delimiter = format!("${tag}$");
    let body = at + delimiter.len();
    match sql[body..].find(&delimiter) {
        Some(end) => body + end + delimiter.len(),
        None => sql.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        assert_eq!(
            statements("update t set a = ';'; -- x; y\n delete from t /* ; */ ; "),
            vec!["update t set a = ';'", "-- x; y\n delete from t /* ; */"]
        );
        assert_eq!(
            statements("do $$ begin commit; end $$; select $1"),
            vec!["do $$ begin commit; end $$", "select $1"]
        );
        assert_eq!(statements("select 1 -- done"), vec!["select 1 -- done"]);
        assert_eq!(statements("select 1; -- done"), vec!["select 1"]);
        assert_eq!(statements("select E'\\';'"), vec!["select E'\\';'"]);
    }

    #[test]
    fn transaction_control_is_found_behind_comments_and_in_any_case() {
        for sql in [
            "COMMIT",
            "end",
            "/* x */ commit",
            "-- c\nrollback",
            "start transaction",
            "prepare transaction 'x'",
            "Begin",
        ] {
            assert!(is_transaction_control(sql), "{sql}");
        }
        for sql in [
            "update t set committed = true",
            "prepare q as select 1",
            "select 'commit'",
            "delete from endings",
        ] {
            assert!(!is_transaction_control(sql), "{sql}");
        }
    }
}
