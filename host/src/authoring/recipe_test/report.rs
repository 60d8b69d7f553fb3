//! What a test run found: one report per case, every difference named.
//! Values in it show secrets as their `{{param.NAME}}` placeholders.

use std::path::PathBuf;
use std::time::Duration;

use super::format::{CaseAction, CommandsMatch};
use crate::plan::PlanStep;

#[derive(Debug)]
pub struct SuiteReport {
    pub recipe_id: String,
    pub test_file: PathBuf,
    pub build: BuildNote,
    pub cases: Vec<CaseReport>,
    /// Cases left out by the name filter.
    pub filtered_out: usize,
}

impl SuiteReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn ok(&self) -> bool {
        self.failed() == 0
    }

    pub fn case(&self, name: &str) -> Option<&CaseReport> {
        self.cases.iter().find(|c| c.name == name)
    }
}

/// Whether the component was built before the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildNote {
    /// Newer than every source file: used as it is.
    UpToDate,
    /// Cargo ran; `rebuilt` tells whether the component changed.
    Built { rebuilt: bool, duration: Duration },
}

#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    pub action: CaseAction,
    pub duration: Duration,
    pub failures: Vec<Failure>,
    /// The operations of the case's action (after the install that other
    /// actions start from).
    pub plan: Vec<PlanStep>,
    /// The action's progress steps, log lines and host messages.
    pub log: Vec<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One difference between what a case expected and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The parameters were rejected, and the case expected a run.
    Params {
        message: String,
    },
    /// The install that an uninstall, upgrade or health case starts from failed.
    Setup {
        message: String,
    },
    /// The run failed, and the case expected it to succeed.
    RunFailed {
        message: String,
    },
    /// The case expected an error, and got another one or none.
    Error {
        expected: String,
        actual: String,
    },
    /// Commands, one argv per line as in the test file.
    Commands {
        mode: CommandsMatch,
        expected: Vec<String>,
        actual: Vec<String>,
    },
    Steps {
        expected: Vec<String>,
        actual: Vec<String>,
    },
    FileMissing {
        path: String,
        written: Vec<String>,
    },
    FileContents {
        path: String,
        expected: String,
        actual: String,
    },
    FileContains {
        path: String,
        needle: String,
        actual: String,
    },
    FileAttribute {
        path: String,
        attribute: String,
        expected: String,
        actual: String,
    },
    /// A field of the export's result.
    Result {
        field: String,
        expected: String,
        actual: String,
    },
    /// The expectation itself cannot be checked (an unknown placeholder, a missing contents-file).
    Expectation {
        message: String,
    },
}
