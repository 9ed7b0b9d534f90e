//! `users-file`: a CSV file with a header row, user *i* gets row *i*, each column a
//! placeholder of that user's (`{{username}}`, `{{password}}`). Values of columns whose name
//! says they are secret (`password`, `token`, `secret`, `key`) are masked in every output.

use std::collections::BTreeMap;
use std::path::Path;

use super::template::valid_name;
use crate::error::InputError;

/// The rows of a users file, one per user, and the values never to print.
#[derive(Debug, Clone, Default)]
pub struct Users {
    pub columns: Vec<String>,
    pub rows: Vec<BTreeMap<String, String>>,
    pub secrets: Vec<String>,
}

/// Whether a column's values are secrets, by its name.
fn secret_column(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

/// Reads `path` (shown as `shown` in errors): at least `users` rows.
pub fn read(path: &Path, shown: &str, users: u32) -> Result<Users, InputError> {
    let bad = |why: String| InputError::Invalid(format!("users-file {shown}: {why}"));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_path(path)
        .map_err(|e| bad(format!("cannot read it: {}", first_line(&e))))?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| bad(first_line(&e)))?
        .iter()
        .map(str::to_owned)
        .collect();
    if let Some(name) = columns.iter().find(|name| !valid_name(name)) {
        return Err(bad(format!(
            "column '{name}' cannot be a placeholder (letters, digits, _ and -; not uuid, user or run)"
        )));
    }
    let mut rows = Vec::new();
    let mut secrets = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(first_line(&e)))?;
        let row: BTreeMap<String, String> = columns
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        secrets.extend(
            row.iter()
                .filter(|(name, value)| secret_column(name) && !value.is_empty())
                .map(|(_, value)| value.clone()),
        );
        rows.push(row);
        if rows.len() == users as usize {
            break;
        }
    }
    if rows.len() < users as usize {
        return Err(bad(format!(
            "{} row(s), fewer than --users {users}: each user needs a row of their own",
            rows.len()
        )));
    }
    Ok(Users {
        columns,
        rows,
        secrets,
    })
}

fn first_line(error: &csv::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or("not CSV")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_a_row_and_passwords_are_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.csv");
        std::fs::write(&path, "username,password\nann,pw-a\nbob,pw-b\ncy,pw-c\n").unwrap();
        let users = read(&path, "users.csv", 2).unwrap();
        assert_eq!(users.rows.len(), 2);
        assert_eq!(users.rows[1]["username"], "bob");
        assert_eq!(users.secrets, vec!["pw-a".to_owned(), "pw-b".to_owned()]);
        let short = read(&path, "users.csv", 4).unwrap_err().to_string();
        assert!(short.contains("3 row(s), fewer than --users 4"), "{short}");
        std::fs::write(&path, "user,password\nann,pw\n").unwrap();
        let clash = read(&path, "users.csv", 1).unwrap_err().to_string();
        assert!(clash.contains("column 'user'"), "{clash}");
    }
}
