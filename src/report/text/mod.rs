//! Tables and lines for a terminal or a pipe, one file per command.

pub mod book;
pub mod compare;
pub mod interleave;
pub mod race;
pub mod stress;

use super::*;
