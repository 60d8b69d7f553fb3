//! How the CLI shows progress and results to a person.

use crate::deploy::PreparedDeploy;
use crate::events::{Event, EventKind, LogLevel};
use crate::runtime::{ActionResult, RunError, RunOutcome};

pub fn print_event(event: &Event) {
    let at = format!("[{:>6.2}s]", event.elapsed.as_secs_f64());
    match &event.kind {
        EventKind::Step { name } => eprintln!("{at} ▸ {name}"),
        EventKind::Log { level, message } => {
            let tag = match level {
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error => "error",
            };
            for line in message.lines() {
                eprintln!("{at}     {tag}: {line}");
            }
        }
        EventKind::Host { message } => eprintln!("{at}   host: {message}"),
    }
}

pub fn print_outcome(app_id: &str, outcome: &RunOutcome, prepared: &PreparedDeploy) {
    if let ActionResult::Installed { app } | ActionResult::Upgraded { app } = &outcome.result {
        println!("✓ installed `{app_id}`");
        if let Some(url) = &app.url {
            println!("  url:     {url}");
        }
        if let Some(address) = &app.address {
            println!("  address: {address}");
        }
        if !app.ports.is_empty() {
            let ports: Vec<String> = app.ports.iter().map(u16::to_string).collect();
            println!("  ports:   {}", ports.join(", "));
        }
        for (name, value) in &app.outputs {
            println!("  {name}: {value}");
        }
        let ids: Vec<&str> = outcome.created.iter().map(|c| c.id.as_str()).collect();
        if !ids.is_empty() {
            println!("  containers: {}", ids.join(", "));
        }
        if !prepared.subject.params.generated.is_empty() {
            let names: Vec<&str> = prepared.subject.params.generated.iter().map(String::as_str).collect();
            println!("  generated secrets: {} (never printed; not stored by this command)", names.join(", "));
        }
    }
}

pub fn print_run_error(err: &RunError) {
    eprintln!("✗ failed: {err}");
    if !err.destroyed.is_empty() {
        eprintln!("  cleaned up: destroyed container(s) {}", err.destroyed.join(", "));
    }
    if !err.left_behind.is_empty() {
        eprintln!("  left behind: container(s) {}", err.left_behind.join(", "));
    }
}
