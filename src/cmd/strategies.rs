//! `strategies`: the registry as a table, a JSON array, or the bare names scripts loop over.

use std::io::Write;

use serde::Serialize;

use crate::cli::StrategiesArgs;
use crate::exit::Exit;
use crate::report;
use crate::strategy::{Mode, Needs, Shows};

use super::finish_output;

/// One strategy as `strategies --json` shows it.
#[derive(Debug, Serialize)]
pub struct StrategyJson {
    pub name: &'static str,
    pub summary: &'static str,
    pub needs: Needs,
    pub shows: Shows,
    pub steps: &'static [&'static str],
}

pub fn run(args: &StrategiesArgs) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    let written = if args.names {
        Mode::ALL
            .iter()
            .try_for_each(|mode| writeln!(out, "{}", mode.name()))
    } else if args.json {
        let all: Vec<StrategyJson> = Mode::ALL
            .iter()
            .map(|mode| {
                let spec = mode.spec();
                StrategyJson {
                    name: spec.name,
                    summary: spec.summary,
                    needs: spec.needs,
                    shows: spec.shows,
                    steps: spec.steps,
                }
            })
            .collect();
        report::write_json(&mut out, &all)
    } else {
        report::text::book::write_strategies(&mut out, Mode::ALL)
    };
    finish_output(written.and_then(|()| out.flush()))?;
    Ok(Exit::Success)
}
