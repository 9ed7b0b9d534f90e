//! The requests of one burst: the one-request form (flags over the flat keys of `--config`),
//! or the file's `[[request]]` entries — each with what makes it a success and the users who
//! send it.

use std::collections::BTreeMap;
use std::path::Path;

use super::file::RaceFile;
use super::request::{self, Label, RequestSpec, RequestTemplate, Success};
use super::template::Parsing;
use crate::cli::RaceArgs;
use crate::error::InputError;

/// Requests in one burst, all users and requests together.
pub const MAX_REQUESTS: usize = 1_000;

/// A request of the burst: what it is, what makes it a success, and who sends it.
#[derive(Debug, Clone)]
pub struct RaceRequest {
    pub template: RequestTemplate,
    pub success: Success,
    /// The users who send it.
    pub senders: Vec<u32>,
    /// Fewer of its successes in a run is `UNTESTED` (`min-successes` of its entry; 0: only
    /// the burst's `--min-successes`, over every request, applies).
    pub min_successes: u32,
}

/// One request of the burst: user `user` sending `requests[request]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub user: u32,
    pub request: usize,
}

/// The requests of the burst: the one-request form (flags over the flat keys of the file), or
/// the file's `[[request]]` entries; whether any goes over https.
pub(super) fn requests(
    args: &RaceArgs,
    file: &RaceFile,
    dir: Option<&Path>,
    users: u32,
    parsing: &mut Parsing<'_>,
) -> Result<(Vec<RaceRequest>, bool), InputError> {
    // Success: the flags' parts over the file's.
    let (file_status, file_headers, file_body) = file
        .success
        .clone()
        .map(request::SuccessSpec::into_parts)
        .unwrap_or_default();
    let flag_headers = args
        .success_header
        .iter()
        .map(|line| request::split_header_pattern(line))
        .collect::<Result<Vec<_>, _>>()?;
    let default_success = || -> Result<Success, InputError> {
        Success::parse(
            if args.success.is_empty() {
                file_status.clone()
            } else {
                args.success.clone()
            },
            if flag_headers.is_empty() {
                &file_headers
            } else {
                &flag_headers
            },
            args.success_body.as_deref().or(file_body.as_deref()),
            "--success",
        )
    };
    let headers = if args.headers.is_empty() {
        file.header.clone()
    } else {
        args.headers.clone()
    };
    let mut form = BTreeMap::new();
    for field in &args.form {
        let (key, value) = field.split_once('=').ok_or_else(|| {
            InputError::Invalid(format!(
                "--form must be 'name=value', got '{}'",
                field.chars().take(40).collect::<String>()
            ))
        })?;
        form.insert(key.to_owned(), value.to_owned());
    }
    if file.request.is_empty() {
        // The flags' body over the file's.
        let flag_body = args.data.is_some() || args.data_file.is_some() || !form.is_empty();
        let spec = RequestSpec {
            name: None,
            url: args.url.clone().or(file.url.clone()),
            method: args.method.clone().or(file.method.clone()),
            header: headers,
            data: if flag_body {
                args.data.clone()
            } else {
                file.data.clone()
            },
            data_file: if flag_body {
                args.data_file.clone()
            } else {
                file.data_file.clone()
            },
            form: if flag_body { form } else { file.form.clone() },
            ..RequestSpec::default()
        };
        // A --data-file flag is relative to the working directory; the file's to the file.
        let body_dir = if flag_body { None } else { dir };
        let template = RequestTemplate::parse(
            &spec,
            Label::Flags,
            "request".to_owned(),
            "POST",
            body_dir,
            parsing,
        )?;
        let https = template.url.https;
        return Ok((
            vec![RaceRequest {
                template,
                success: default_success()?,
                senders: (0..users).collect(),
                min_successes: 0,
            }],
            https,
        ));
    }
    let one_request_flags = [
        (args.url.is_some() || file.url.is_some(), "url"),
        (args.method.is_some() || file.method.is_some(), "method"),
        (
            args.data.is_some() || file.data.is_some() || !form.is_empty() || !file.form.is_empty(),
            "data/form",
        ),
        (
            args.data_file.is_some() || file.data_file.is_some(),
            "data-file",
        ),
    ];
    if let Some((_, key)) = one_request_flags.iter().find(|(given, _)| *given) {
        return Err(InputError::Invalid(format!(
            "--config has [[request]] entries: {key} goes in each of them, not at the top (nor as a flag)"
        )));
    }
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut next = 0u32;
    let mut https = false;
    for (i, entry) in file.request.iter().enumerate() {
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| format!("request {}", i + 1));
        if !names.insert(name.clone()) {
            return Err(InputError::Invalid(format!(
                "[[request]] {}: the name '{name}' is taken by another request",
                i + 1
            )));
        }
        let table = format!("[[request]] {} ({name})", i + 1);
        entry.only(&table, false)?;
        // The top-level headers go on every request, before its own.
        let mut spec = entry.clone();
        spec.header = headers
            .iter()
            .cloned()
            .chain(entry.header.clone())
            .collect();
        let template =
            RequestTemplate::parse(&spec, Label::Table(&table), name, "POST", dir, parsing)?;
        https |= template.url.https;
        let success = match &entry.success {
            Some(own) => {
                let (status, headers, body) = own.clone().into_parts();
                Success::parse(
                    status,
                    &headers,
                    body.as_deref(),
                    &format!("{table} success"),
                )?
            }
            None => default_success()?,
        };
        // A request with `users = N` is sent by the next N users, in order (wrapping around);
        // without it, by every user.
        let senders = match entry.users {
            Some(0) => {
                return Err(InputError::Invalid(format!(
                    "{table} users: 0 users would send nothing"
                )));
            }
            Some(n) if n > users => {
                return Err(InputError::Invalid(format!(
                    "{table} users: {n} is more than --users {users}"
                )));
            }
            Some(n) => {
                let senders: Vec<u32> = (0..n).map(|k| (next + k) % users).collect();
                next = (next + n) % users;
                senders
            }
            None => (0..users).collect(),
        };
        let min_successes = entry.min_successes.unwrap_or(0);
        if min_successes as usize > senders.len() {
            return Err(InputError::Invalid(format!(
                "{table} min-successes: {min_successes} is more than the {} user(s) who send it: no run could be tested",
                senders.len()
            )));
        }
        out.push(RaceRequest {
            template,
            success,
            senders,
            min_successes,
        });
    }
    Ok((out, https))
}

/// Every request of the burst, each user's together, in the order of the file.
pub(super) fn slots(requests: &[RaceRequest]) -> Result<Vec<Slot>, InputError> {
    let mut slots = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        for user in &request.senders {
            slots.push(Slot {
                user: *user,
                request: index,
            });
        }
    }
    slots.sort_by_key(|slot| (slot.user, slot.request));
    if slots.len() > MAX_REQUESTS {
        return Err(InputError::Invalid(format!(
            "the burst would send {} requests, more than {MAX_REQUESTS}: fewer --users or [[request]] users",
            slots.len()
        )));
    }
    Ok(slots)
}
