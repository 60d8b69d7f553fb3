//! Report panics to the host before the module traps.
//!
//! On wasm32-unknown-unknown a panic aborts with a bare `unreachable` trap and
//! its message goes nowhere; the hook sends it through `progress.log` first so
//! the job shows why the recipe died.

use std::panic::PanicHookInfo;
use std::sync::Once;

static INSTALL: Once = Once::new();

/// Install the hook once per instance; called at the start of every export.
pub fn install() {
    INSTALL.call_once(|| std::panic::set_hook(Box::new(report)));
}

fn report(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let line = match info.location() {
        Some(at) => format!("recipe panicked at {}:{}: {message}", at.file(), at.line()),
        None => format!("recipe panicked: {message}"),
    };
    crate::log::error(line);
}
