//! Writing and reading files in a container (`files` grant).

use crate::bindings::proximity::recipe::files as wit;
use crate::container::Container;
use crate::error::{Error, Result, ResultExt};

/// Mode, owner and group of a written file. `FileOptions::default()` is mode
/// 0644 owned by whoever the backend writes as (root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOptions {
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions::mode(0o644)
    }
}

impl FileOptions {
    pub fn mode(mode: u32) -> Self {
        FileOptions { mode, owner: None, group: None }
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

impl Container {
    /// Write `contents` to `path` with `mode` (e.g. `0o644`).
    pub fn write_file(&self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        self.write_file_with(path, contents, &FileOptions::mode(mode))
    }

    /// Write `contents` to `path` with mode, owner and group.
    pub fn write_file_with(&self, path: &str, contents: impl AsRef<[u8]>, options: &FileOptions) -> Result<()> {
        let options =
            wit::FileOptions { mode: options.mode, owner: options.owner.clone(), group: options.group.clone() };
        wit::write_file(self.raw(), path, contents.as_ref(), &options).context(format_args!("writing {path}"))
    }

    /// The bytes of `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        wit::read_file(self.raw(), path).context(format_args!("reading {path}"))
    }

    /// The text of `path`; invalid UTF-8 is `invalid-input`.
    pub fn read_to_string(&self, path: &str) -> Result<String> {
        String::from_utf8(self.read_file(path)?).map_err(|_| Error::invalid_input(format!("{path} is not UTF-8 text")))
    }
}
