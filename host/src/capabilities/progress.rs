//! `progress`: steps and log lines, always granted.

use super::RunState;
use crate::bindings::progress;
use crate::events::LogLevel;

impl progress::Host for RunState {
    async fn step(&mut self, name: String) -> wasmtime::Result<()> {
        self.run.events.step(&name);
        self.run.journal().last_step = Some(name);
        Ok(())
    }

    async fn log(&mut self, level: progress::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            progress::Level::Debug => LogLevel::Debug,
            progress::Level::Info => LogLevel::Info,
            progress::Level::Warn => LogLevel::Warn,
            progress::Level::Error => LogLevel::Error,
        };
        self.run.events.log(level, &message);
        if level == LogLevel::Error {
            self.run.journal().last_error = Some(self.run.events.redactor().redact(&message));
        }
        Ok(())
    }
}
