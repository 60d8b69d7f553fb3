//! The SDK's error type: one case per case of the WIT `error` variant.

use core::fmt;

use crate::bindings::proximity::recipe::types::Error as WitError;

/// Why a capability call or a recipe step failed.
///
/// Each case maps 1:1 to the WIT `error` variant, so what a recipe returns is
/// exactly what the host records for the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The manifest does not grant the call (or its arguments exceed the grant).
    Denied(String),
    /// Malformed or out-of-range arguments, including bad parameters.
    InvalidInput(String),
    /// A deadline passed.
    Timeout(String),
    /// The container, file, service or command does not exist.
    NotFound(String),
    /// The infrastructure, or a command in the container, failed.
    Backend(String),
}

/// `Result` with the SDK's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub fn denied(message: impl Into<String>) -> Self {
        Error::Denied(message.into())
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Error::Timeout(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    pub fn backend(message: impl Into<String>) -> Self {
        Error::Backend(message.into())
    }

    /// The case name as the WIT spells it (`invalid-input`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Denied(_) => "denied",
            Error::InvalidInput(_) => "invalid-input",
            Error::Timeout(_) => "timeout",
            Error::NotFound(_) => "not-found",
            Error::Backend(_) => "backend",
        }
    }

    /// The text that explains the error.
    pub fn message(&self) -> &str {
        match self {
            Error::Denied(m) | Error::InvalidInput(m) | Error::Timeout(m) | Error::NotFound(m) | Error::Backend(m) => m,
        }
    }

    /// The same kind of error with `what` put in front of the message, so a
    /// failure deep in a helper still says which step it belonged to.
    pub fn context(self, what: impl fmt::Display) -> Self {
        let prefix = |m: String| format!("{what}: {m}");
        match self {
            Error::Denied(m) => Error::Denied(prefix(m)),
            Error::InvalidInput(m) => Error::InvalidInput(prefix(m)),
            Error::Timeout(m) => Error::Timeout(prefix(m)),
            Error::NotFound(m) => Error::NotFound(prefix(m)),
            Error::Backend(m) => Error::Backend(prefix(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::Denied(m) => Error::Denied(m),
            WitError::InvalidInput(m) => Error::InvalidInput(m),
            WitError::Timeout(m) => Error::Timeout(m),
            WitError::NotFound(m) => Error::NotFound(m),
            WitError::Backend(m) => Error::Backend(m),
        }
    }
}

impl From<Error> for WitError {
    fn from(e: Error) -> Self {
        match e {
            Error::Denied(m) => WitError::Denied(m),
            Error::InvalidInput(m) => WitError::InvalidInput(m),
            Error::Timeout(m) => WitError::Timeout(m),
            Error::NotFound(m) => WitError::NotFound(m),
            Error::Backend(m) => WitError::Backend(m),
        }
    }
}

/// Adds [`Error::context`] to results.
pub trait ResultExt<T> {
    /// Prefix the error message (if any) with `what`, keeping its kind.
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for core::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
}
