//! `--check-jq EXPR`: a jq expression, run by jaq (a jq in Rust), on the JSON a `--check-url`
//! answered after a run; `$before` is the same URL read before the burst, `$successes` the
//! run's acknowledged successes. Its output must be true: `false` or `null` (or no output, or
//! an error) is a violation. A program that halts (`halt`, `halt_error`) is a failed check, not
//! the end of this process.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;

/// The variables every expression may use, in the order their values are given.
const VARS: [&str; 2] = ["$before", "$successes"];

/// What the expression said of the JSON it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Holds,
    /// Its first output was `false`, `null` or missing, or it failed: said in words.
    Broken(String),
}

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// Compiles `expr`; one line naming what is wrong (the flag is the caller's to add).
fn compile<'a>(expr: &'a str, arena: &'a Arena) -> Result<Filter, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let modules = Loader::new(defs)
        .load(
            arena,
            File {
                code: expr,
                path: (),
            },
        )
        .map_err(|errors| {
            format!(
                "'{expr}' is not a jq program ({} error(s) parsing it)",
                errors.len()
            )
        })?;
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(VARS)
        .compile(modules)
        .map_err(|errors| {
            let names: Vec<String> = errors
                .iter()
                .flat_map(|(_, errs)| errs.iter().map(|(name, _)| (*name).to_owned()))
                .collect();
            format!("'{expr}' does not compile: unknown {}", names.join(", "))
        })
}

/// Whether `expr` is a jq program this can run: said before anything is sent.
pub fn check(expr: &str) -> Result<(), String> {
    compile(expr, &Arena::default()).map(drop)
}

/// Runs `expr` on `input` (a JSON body) with `$before` (the body read before the burst, or
/// `null`) and `$successes`.
pub fn judge(expr: &str, input: &[u8], before: Option<&[u8]>, successes: u32) -> Judged {
    let arena = Arena::default();
    let filter = match compile(expr, &arena) {
        Ok(filter) => filter,
        Err(why) => return Judged::Broken(why),
    };
    let parse = |bytes: &[u8]| {
        jaq_json::read::parse_single(bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    };
    let input = match parse(input) {
        Ok(value) => value,
        Err(why) => return Judged::Broken(why),
    };
    let before = match before.map(parse).transpose() {
        Ok(value) => value.unwrap_or(Val::Null),
        Err(why) => return Judged::Broken(format!("before the burst, {why}")),
    };
    let vars = Vars::new([before, Val::from(successes as usize)]);
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, vars);
    let mut out = filter.id.run((ctx, input));
    match out.next() {
        None => Judged::Broken(format!("'{expr}' gave no output")),
        Some(Ok(value)) if jaq_core::ValT::as_bool(&value) => Judged::Holds,
        Some(Ok(value)) => Judged::Broken(format!("'{expr}' is {value}")),
        Some(Err(exception)) => match exception.get_err() {
            Ok(error) => Judged::Broken(format!("'{expr}' failed: {error}")),
            Err(_) => Judged::Broken(format!("'{expr}' halted")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_holds_and_false_null_or_an_error_is_broken() {
        let body = br#"{"balance": -20}"#;
        assert_eq!(
            judge(".balance >= 0", br#"{"balance": 40}"#, None, 1),
            Judged::Holds
        );
        assert_eq!(
            judge(".balance >= 0", body, None, 1),
            Judged::Broken("'.balance >= 0' is false".to_owned())
        );
        assert_eq!(
            judge(".missing", body, None, 1),
            Judged::Broken("'.missing' is null".to_owned())
        );
        let accounted = ".balance == $before.balance - 60 * $successes";
        assert_eq!(
            judge(
                accounted,
                br#"{"balance": 40}"#,
                Some(br#"{"balance": 100}"#),
                1
            ),
            Judged::Holds
        );
        assert!(matches!(
            judge(accounted, body, Some(br#"{"balance": 100}"#), 1),
            Judged::Broken(_)
        ));
        assert!(matches!(
            judge("halt_error", body, None, 0),
            Judged::Broken(_)
        ));
        assert!(matches!(
            judge(".", b"not json", None, 0),
            Judged::Broken(_)
        ));
        assert!(check(".a >= ").is_err());
        assert!(check("$nope").is_err());
        assert!(check("$before.balance - $successes").is_ok());
    }
}
