//! The benchmark's phases, each measuring both paths, with progress on stderr.

pub mod first_token;
pub mod memory;
pub mod unary;

use std::time::Duration;

/// Time for closed connections to be torn down between runs.
pub const SETTLE: Duration = Duration::from_secs(1);

pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}
