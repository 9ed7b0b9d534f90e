//! `completions` and `man`: the command line, described for shells and for `man`, from the same
//! clap definition that parses it (so they cannot drift from it).

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

use super::finish_output;

/// A completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "booking-cli", &mut out);
    let mut stdout = std::io::stdout().lock();
    finish_output(stdout.write_all(&out).and_then(|()| stdout.flush()))?;
    Ok(Exit::Success)
}

/// One manual page: the program's own sections, then each command's synopsis, description and
/// options under a heading of its own (clap_mangen renders one command per page).
pub fn man() -> anyhow::Result<Exit> {
    let command = Cli::command();
    let page = clap_mangen::Man::new(command.clone());
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    page.render_subcommands_section(&mut out)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("booking-cli {}", sub.get_name());
        // The command's own sections, under its name; nested commands (db reset, bench lock)
        // are shown one level down.
        let leaves: Vec<(String, clap::Command)> = if sub.has_subcommands() {
            sub.get_subcommands()
                .map(|leaf| {
                    let full = format!("{name} {}", leaf.get_name());
                    (full.clone(), leaf.clone().bin_name(full))
                })
                .collect()
        } else {
            vec![(name.clone(), sub.clone().bin_name(name))]
        };
        for (full, leaf) in leaves {
            writeln!(out, ".SH \"{}\"", full.to_uppercase())?;
            let leaf_page = clap_mangen::Man::new(leaf);
            let mut section = Vec::new();
            leaf_page.render_synopsis_section(&mut section)?;
            leaf_page.render_description_section(&mut section)?;
            leaf_page.render_options_section(&mut section)?;
            // Its sections become sub-sections of the command's.
            let text = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
            out.write_all(text.as_bytes())?;
        }
    }
    page.render_extra_section(&mut out)?;
    page.render_version_section(&mut out)?;
    let mut stdout = std::io::stdout().lock();
    finish_output(stdout.write_all(&out).and_then(|()| stdout.flush()))?;
    Ok(Exit::Success)
}
