//! Progress reporting: steps of the job (always granted).

use crate::bindings::proximity::recipe::progress as wit;

/// Announce that a new step begins (the previous one is done).
pub fn step(name: impl AsRef<str>) {
    wit::step(name.as_ref());
}
