//! The recipe manifest (`recipe.toml`): parsing, validation, parameter and
//! resource resolution, and the grants that bound what a recipe may call.
//!
//! A manifest is static and readable without running any code: the catalog lists
//! it, and the operator reviews its grants before anything runs.
//!
//! Two kinds of errors come out of [`Manifest::from_toml_str`]:
//!
//! * structural ones (TOML syntax, unknown keys, a value of the wrong type, an
//!   unknown parameter `type` or port `protocol`, a version that is not semver):
//!   [`ManifestError::Toml`], with toml's line/column message; the first one stops
//!   the parse;
//! * everything else ([`ManifestError::Invalid`]): all problems are collected and
//!   reported together, each prefixed by its key path, e.g.
//!   `parameters[2].default: must be at most 10 (got 30)` (array indexes count from 0).
//!
//! Decisions the format leaves open, as implemented here:
//!
//! * `[resources]` entries need both `min` and `default`; `max` is optional. Absent
//!   entries default to cores 1/1, memory-mb 128/512, swap-mb 0/512, disk-gb 2/4.
//! * `[grants.lxc]` without `"lxc"` in `capabilities` is an error. `"lxc"` without a
//!   `[grants.lxc]` table is fine: each bound then defaults to the resource's `max`,
//!   else its `default`, and no features are granted. Explicit bounds must be at
//!   least the resource's `default` and `max`, so that whatever the operator may
//!   choose, the recipe may create. The loaded [`LxcGrant`] always holds concrete
//!   numbers, and `grants.lxc` is `Some` exactly when `lxc` is granted.
//! * What the operator may choose for a resource (see [`Manifest::resource_bounds`]):
//!   from `min` up to `max`; without `max`, up to the `[grants.lxc]` bound for
//!   cores, memory and disk when `lxc` is granted, otherwise unbounded by the manifest.
//! * Swap is not bounded by the grants (it is the operator's choice).
//! * `"proxy"` in `capabilities` needs at least one `[[grants.proxy]]` entry and
//!   vice versa. Proxy commands are matched exactly; their arguments are checked by
//!   the proxy server's own whitelist, not here.
//! * Parameters: a secret may not have a `default` (it would be public in the
//!   manifest: use `generate = true`); `generate` excludes `required` and `default`;
//!   `length` needs `generate`; a generated length must fit `min-length`/`max-length`,
//!   and a `pattern` must accept letters and digits. Lengths count characters
//!   (Unicode scalar values). A parameter that is neither given, nor defaulted, nor
//!   generated is absent from [`ResolvedParams::values`]. Given values are taken as
//!   typed (an empty string is a given empty string: forms should leave blank fields out).
//! * `[limits]`: memory-mb in 1..=4096, timeout-secs in 1..=86400.
//! * `recipe.icon` must be a relative path without `..`; [`Manifest::load`] also
//!   checks that the file exists in the recipe directory.
//! * Error messages about secrets never contain their value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use rand::distr::Alphanumeric;
use rand::Rng;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The manifest file's name inside a recipe directory.
pub const MANIFEST_FILE: &str = "recipe.toml";
/// Default sandbox memory for a recipe's wasm code.
pub const DEFAULT_SANDBOX_MEMORY_MB: u32 = 64;
/// Default wall-clock limit for one run of a recipe.
pub const DEFAULT_TIMEOUT_SECS: u64 = 900;
/// Upper bound for `[limits] memory-mb`.
pub const MAX_SANDBOX_MEMORY_MB: u32 = 4096;
/// Upper bound for `[limits] timeout-secs` (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Default length of a generated secret.
pub const DEFAULT_SECRET_LENGTH: u32 = 32;
/// Allowed lengths of a generated secret.
pub const SECRET_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 16..=128;

static RECIPE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{0,62}$").unwrap());

/// A recipe id: `^[a-z0-9][a-z0-9-]{0,62}$`, so that it names one directory
/// inside a catalog and nothing outside it.
pub fn is_recipe_id(id: &str) -> bool {
    RECIPE_ID.is_match(id)
}
static PARAM_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]{0,63}$").unwrap());
static SERVICE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$").unwrap());

// ---------------------------------------------------------------------------
// The manifest
// ---------------------------------------------------------------------------

/// A validated `recipe.toml`.
///
/// Serializes (JSON for `recipe inspect` and the HTTP API, or TOML) with the same
/// kebab-case keys as the file. Deserializing (e.g. from JSON) does not validate:
/// call [`Manifest::validate`] on a manifest that did not come from
/// [`Manifest::from_toml_str`] or [`Manifest::load`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    pub recipe: RecipeMeta,
    #[serde(default)]
    pub resources: ResourceSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub limits: SandboxLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSpec>,
    #[serde(default)]
    pub grants: Grants,
}

/// `[recipe]`: who the recipe is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecipeMeta {
    /// `^[a-z0-9][a-z0-9-]{0,62}$`
    pub id: String,
    pub name: String,
    pub version: semver::Version,
    /// One line.
    pub description: String,
    pub category: String,
    /// Relative path inside the recipe directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// `[resources]`: the container resources the app needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default = "ResourceSpec::default_cores")]
    pub cores: ResourceRange,
    #[serde(default = "ResourceSpec::default_memory")]
    pub memory_mb: ResourceRange,
    #[serde(default = "ResourceSpec::default_swap")]
    pub swap_mb: ResourceRange,
    #[serde(default = "ResourceSpec::default_disk")]
    pub disk_gb: ResourceRange,
}

impl ResourceSpec {
    fn default_cores() -> ResourceRange {
        ResourceRange { min: 1, default: 1, max: None }
    }
    fn default_memory() -> ResourceRange {
        ResourceRange { min: 128, default: 512, max: None }
    }
    fn default_swap() -> ResourceRange {
        ResourceRange { min: 0, default: 512, max: None }
    }
    fn default_disk() -> ResourceRange {
        ResourceRange { min: 2, default: 4, max: None }
    }
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec {
            cores: Self::default_cores(),
            memory_mb: Self::default_memory(),
            swap_mb: Self::default_swap(),
            disk_gb: Self::default_disk(),
        }
    }
}

/// `{ min, default, max? }` for one resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceRange {
    pub min: u32,
    pub default: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// `[[ports]]`: a port the app listens on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PortSpec {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[limits]`: the sandbox around the recipe's wasm code.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SandboxLimits {
    #[serde(default = "SandboxLimits::default_memory")]
    pub memory_mb: u32,
    #[serde(default = "SandboxLimits::default_timeout")]
    pub timeout_secs: u64,
}

impl SandboxLimits {
    fn default_memory() -> u32 {
        DEFAULT_SANDBOX_MEMORY_MB
    }
    fn default_timeout() -> u64 {
        DEFAULT_TIMEOUT_SECS
    }
    /// The wasm memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize).saturating_mul(1024 * 1024)
    }
    /// The run's deadline.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits { memory_mb: DEFAULT_SANDBOX_MEMORY_MB, timeout_secs: DEFAULT_TIMEOUT_SECS }
    }
}

/// `[[parameters]]`: one typed operator input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ParameterSpec {
    /// `^[a-z][a-z0-9-]*$` (at most 64 characters), unique.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// string/secret: a regex the value must match (anchored as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// string/secret, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// string/secret, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// integer
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// integer
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// enum only: the allowed values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// secret only: the host generates a value when none is given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub generate: bool,
    /// secret only, with `generate`: the generated length (default 32, 16..=128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ParameterSpec {
    pub fn is_secret(&self) -> bool {
        self.kind == ParamType::Secret
    }

    /// Length of a generated value.
    pub fn generated_length(&self) -> u32 {
        self.length.unwrap_or(DEFAULT_SECRET_LENGTH)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Secret,
    Integer,
    Boolean,
    Enum,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Secret => "secret",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Enum => "enum",
        }
    }

    fn is_text(self) -> bool {
        matches!(self, ParamType::String | ParamType::Secret)
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter value: a default in the manifest, or a resolved value handed to the
/// recipe (the WIT `param-value`). Secrets and enum choices are `Text`.
/// Serializes as a plain string, integer or boolean.
///
/// `Debug` shows the value: print [`ResolvedParams`], which redacts secrets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl ParamValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }
    fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Text(_) => "a string",
            ParamValue::Integer(_) => "an integer",
            ParamValue::Boolean(_) => "a boolean",
        }
    }
}

/// The plain value (a secret too: redact before printing).
impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Text(s) => f.write_str(s),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for ParamValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ParamValue::Text(t) => s.serialize_str(t),
            ParamValue::Integer(i) => s.serialize_i64(*i),
            ParamValue::Boolean(b) => s.serialize_bool(*b),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ParamValue, E> {
                Ok(ParamValue::Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ParamValue, E> {
                i64::try_from(v)
                    .map(ParamValue::Integer)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue::Boolean(v))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// TOML syntax or structure (unknown key, wrong type): toml's message with line and column.
    #[error("{}{message}", file_prefix(path))]
    Toml { path: Option<PathBuf>, message: String },
    /// Every rule the manifest breaks, each as `key.path: what is wrong`.
    #[error("{}", invalid_message(path, problems))]
    Invalid { path: Option<PathBuf>, problems: Vec<String> },
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

fn invalid_message(path: &Option<PathBuf>, problems: &[String]) -> String {
    let what = match path {
        Some(p) => p.display().to_string(),
        None => "recipe manifest".to_owned(),
    };
    let n = problems.len();
    let mut out = format!("{what} is invalid ({n} problem{}):", if n == 1 { "" } else { "s" });
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.replace('\n', "\n    "));
    }
    out
}

/// One problem with an operator-supplied parameter or resource value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter's name (or the resource's key, e.g. `memory-mb`).
    pub name: String,
    pub message: String,
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// Every problem with the operator's input; `Display` lists one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamErrors(pub Vec<ParamProblem>);

impl ParamErrors {
    /// Whether one of the problems is about `name`.
    pub fn mentions(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.name == name)
    }
}

impl fmt::Display for ParamErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParamErrors {}

// ---------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------

/// A capability interface of the WIT world; a grant names exactly one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Lxc,
    Exec,
    Files,
    Proxy,
    Probe,
    /// Always granted.
    Progress,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Lxc,
        Capability::Exec,
        Capability::Files,
        Capability::Proxy,
        Capability::Probe,
        Capability::Progress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Lxc => "lxc",
            Capability::Exec => "exec",
            Capability::Files => "files",
            Capability::Proxy => "proxy",
            Capability::Probe => "probe",
            Capability::Progress => "progress",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the known capabilities or features.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{name}` (known: {known})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub known: String,
}

impl FromStr for Capability {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| UnknownName {
            kind: "capability",
            name: s.to_owned(),
            known: join(Capability::ALL.iter().map(|c| c.as_str())),
        })
    }
}

/// A container feature that `[grants.lxc] features` may allow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum LxcFeature {
    Nesting,
    Keyctl,
    Fuse,
}

impl LxcFeature {
    pub const ALL: [LxcFeature; 3] = [LxcFeature::Nesting, LxcFeature::Keyctl, LxcFeature::Fuse];

    pub fn as_str(self) -> &'static str {
        match self {
            LxcFeature::Nesting => "nesting",
            LxcFeature::Keyctl => "keyctl",
            LxcFeature::Fuse => "fuse",
        }
    }
}

impl fmt::Display for LxcFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LxcFeature {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        LxcFeature::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| UnknownName {
            kind: "feature",
            name: s.to_owned(),
            known: join(LxcFeature::ALL.iter().map(|c| c.as_str())),
        })
    }
}

/// `[grants]`: what the recipe's code may call.
///
/// In a loaded manifest `lxc` is `Some` exactly when `Capability::Lxc` is granted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Grants {
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxc: Option<LxcGrant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyGrant>,
}

/// `[grants.lxc]`: bounds on `create-lxc`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LxcGrant {
    pub max_cores: u32,
    pub max_memory_mb: u32,
    pub max_disk_gb: u32,
    #[serde(default)]
    pub features: BTreeSet<LxcFeature>,
}

/// `[[grants.proxy]]`: a proxy service and the commands the recipe may run there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProxyGrant {
    pub service: String,
    /// Allowed command strings, matched exactly.
    pub commands: Vec<String>,
}

/// What a `create-lxc` call asks for, as far as grants are concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerRequest {
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub nesting: bool,
    pub keyctl: bool,
    pub fuse: bool,
}

/// A call the grants refuse. `Display` is the message.
///
/// `grant` names the missing grant as a key path under `[grants]`:
/// `capabilities.exec`, `lxc.max-cores`, `lxc.max-memory-mb`, `lxc.max-disk-gb`,
/// `lxc.features.keyctl`, `proxy.<service>` (several joined by `, `).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    pub grant: String,
    pub message: String,
}

impl Grants {
    /// Whether `cap` is granted (`Progress` always is).
    pub fn allows(&self, cap: Capability) -> bool {
        cap == Capability::Progress || self.capabilities.contains(&cap)
    }

    /// `Ok` when `cap` is granted, else a `Denied` naming it.
    pub fn require(&self, cap: Capability) -> Result<(), Denied> {
        if self.allows(cap) {
            Ok(())
        } else {
            Err(Denied {
                grant: format!("capabilities.{cap}"),
                message: format!("capability `{cap}` is not granted (add \"{cap}\" to [grants] capabilities)"),
            })
        }
    }

    /// Checks a `create-lxc` request against the `lxc` capability and
    /// `[grants.lxc]`. Every exceeded bound is named in the one `Denied`.
    pub fn check_container(&self, req: &ContainerRequest) -> Result<(), Denied> {
        self.require(Capability::Lxc)?;
        let Some(lxc) = &self.lxc else {
            return Err(Denied {
                grant: "lxc".into(),
                message: "create-lxc is not bounded: [grants.lxc] is missing".into(),
            });
        };
        let mut grants = Vec::new();
        let mut messages = Vec::new();
        let mut bound = |asked: u32, max: u32, what: &str, key: &str| {
            if asked > max {
                grants.push(format!("lxc.{key}"));
                messages.push(format!("create-lxc asks for {asked} {what} but [grants.lxc] {key} is {max}"));
            }
        };
        bound(req.cores, lxc.max_cores, "cores", "max-cores");
        bound(req.memory_mb, lxc.max_memory_mb, "MB of memory", "max-memory-mb");
        bound(req.disk_gb, lxc.max_disk_gb, "GB of disk", "max-disk-gb");
        for (asked, feature) in
            [(req.nesting, LxcFeature::Nesting), (req.keyctl, LxcFeature::Keyctl), (req.fuse, LxcFeature::Fuse)]
        {
            if asked && !lxc.features.contains(&feature) {
                grants.push(format!("lxc.features.{feature}"));
                messages.push(format!("feature `{feature}` is not in [grants.lxc] features"));
            }
        }
        if messages.is_empty() {
            Ok(())
        } else {
            Err(Denied { grant: grants.join(", "), message: messages.join("; ") })
        }
    }

    /// Checks a `proxy-exec` call: the `proxy` capability, then the service and the
    /// exact command string.
    pub fn check_proxy(&self, service: &str, command: &str) -> Result<(), Denied> {
        self.require(Capability::Proxy)?;
        let allowed = self.proxy.iter().any(|g| g.service == service && g.commands.iter().any(|c| c == command));
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                grant: format!("proxy.{service}"),
                message: format!("proxy service `{service}` command `{command}` is not in [[grants.proxy]]"),
            })
        }
    }

    /// What these grants allow that `before` did not, one line each: what an
    /// operator confirms when an installed recipe's new version asks for more.
    /// Empty when nothing grew (grants that shrank need no confirmation).
    pub fn added_since(&self, before: &Grants) -> Vec<String> {
        let mut added = Vec::new();
        for cap in &self.capabilities {
            if !before.allows(*cap) {
                added.push(format!("capability `{cap}`"));
            }
        }
        // A recipe that could not create containers before had no bounds: all of them are new.
        let none = LxcGrant { max_cores: 0, max_memory_mb: 0, max_disk_gb: 0, features: BTreeSet::new() };
        let was = before.lxc.as_ref().filter(|_| before.allows(Capability::Lxc)).unwrap_or(&none);
        if let Some(now) = self.lxc.as_ref().filter(|_| self.allows(Capability::Lxc)) {
            for (what, now, was) in [
                ("max-cores", now.max_cores, was.max_cores),
                ("max-memory-mb", now.max_memory_mb, was.max_memory_mb),
                ("max-disk-gb", now.max_disk_gb, was.max_disk_gb),
            ] {
                if now > was {
                    added.push(format!("lxc {what} {was} -> {now}"));
                }
            }
            for feature in now.features.difference(&was.features) {
                added.push(format!("lxc feature `{feature}`"));
            }
        }
        for grant in &self.proxy {
            let known = before.proxy.iter().find(|g| g.service == grant.service);
            for command in &grant.commands {
                if !known.is_some_and(|g| g.commands.contains(command)) {
                    added.push(format!("proxy service `{}` command `{command}`", grant.service));
                }
            }
        }
        added
    }

    /// The grants in plain words, one line each, for the operator's review.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for cap in &self.capabilities {
            match cap {
                Capability::Lxc => {
                    let line = match &self.lxc {
                        Some(l) => {
                            let mut s = format!(
                                "creates containers (up to {} core{}, {} MB memory, {} GB disk",
                                l.max_cores,
                                if l.max_cores == 1 { "" } else { "s" },
                                l.max_memory_mb,
                                l.max_disk_gb
                            );
                            if !l.features.is_empty() {
                                s.push_str("; features: ");
                                s.push_str(&join(l.features.iter().map(|f| f.as_str())));
                            }
                            s.push(')');
                            s
                        }
                        None => "creates containers".to_owned(),
                    };
                    lines.push(line);
                }
                Capability::Exec => lines.push("runs commands inside its containers".into()),
                Capability::Files => lines.push("writes and reads files in its containers".into()),
                Capability::Proxy => {
                    if self.proxy.is_empty() {
                        lines.push("calls proxy services (none listed)".into());
                    }
                    for g in &self.proxy {
                        let cmds = join(g.commands.iter().map(|c| format!("`{c}`")));
                        lines.push(format!("calls proxy service `{}`: commands {cmds}", g.service));
                    }
                }
                Capability::Probe => lines.push("waits for ports/URLs in its containers to answer".into()),
                Capability::Progress => {}
            }
        }
        if lines.is_empty() {
            lines.push("uses no capabilities (only reports progress)".into());
        }
        lines
    }
}

// ---------------------------------------------------------------------------
// The TOML form: grants with names as strings, so that every unknown one is reported
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawManifest {
    recipe: RecipeMeta,
    #[serde(default)]
    resources: ResourceSpec,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    limits: SandboxLimits,
    #[serde(default)]
    parameters: Vec<ParameterSpec>,
    #[serde(default)]
    grants: RawGrants,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    lxc: Option<RawLxcGrant>,
    #[serde(default)]
    proxy: Vec<ProxyGrant>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawLxcGrant {
    max_cores: Option<u32>,
    max_memory_mb: Option<u32>,
    max_disk_gb: Option<u32>,
    #[serde(default)]
    features: Vec<String>,
}

/// Problems collected while validating, each `path: message`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

fn names_from<T: FromStr<Err = UnknownName> + Ord + Copy + fmt::Display>(
    raw: &[String],
    path: &str,
    problems: &mut Problems,
) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    for (i, name) in raw.iter().enumerate() {
        match name.parse::<T>() {
            Ok(v) => {
                if !set.insert(v) {
                    problems.add(format!("{path}[{i}]"), format!("`{v}` is listed twice"));
                }
            }
            Err(e) => problems.add(format!("{path}[{i}]"), e),
        }
    }
    set
}

impl RawGrants {
    fn into_grants(self, resources: &ResourceSpec, problems: &mut Problems) -> Grants {
        let capabilities: BTreeSet<Capability> = names_from(&self.capabilities, "grants.capabilities", problems);
        let bound = |r: &ResourceRange| r.max.unwrap_or(r.default);
        let lxc = match self.lxc {
            Some(raw) => Some(LxcGrant {
                max_cores: raw.max_cores.unwrap_or_else(|| bound(&resources.cores)),
                max_memory_mb: raw.max_memory_mb.unwrap_or_else(|| bound(&resources.memory_mb)),
                max_disk_gb: raw.max_disk_gb.unwrap_or_else(|| bound(&resources.disk_gb)),
                features: names_from(&raw.features, "grants.lxc.features", problems),
            }),
            None if capabilities.contains(&Capability::Lxc) => Some(LxcGrant {
                max_cores: bound(&resources.cores),
                max_memory_mb: bound(&resources.memory_mb),
                max_disk_gb: bound(&resources.disk_gb),
                features: BTreeSet::new(),
            }),
            None => None,
        };
        Grants { capabilities, lxc, proxy: self.proxy }
    }
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

impl Manifest {
    /// Parses and validates a manifest.
    pub fn from_toml_str(text: &str) -> Result<Manifest, ManifestError> {
        Self::parse(text, None, None)
    }

    /// Reads and validates `recipe_dir/recipe.toml`; errors name the file. Also
    /// checks that `recipe.icon`, if given, exists in `recipe_dir`.
    pub fn load(recipe_dir: &Path) -> Result<Manifest, ManifestError> {
        let path = recipe_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        Self::parse(&text, Some(path), Some(recipe_dir))
    }

    fn parse(text: &str, path: Option<PathBuf>, dir: Option<&Path>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError::Toml { path: path.clone(), message: e.to_string().trim_end().to_owned() })?;
        let mut problems = Problems::default();
        let grants = raw.grants.into_grants(&raw.resources, &mut problems);
        let manifest = Manifest {
            recipe: raw.recipe,
            resources: raw.resources,
            ports: raw.ports,
            limits: raw.limits,
            parameters: raw.parameters,
            grants,
        };
        manifest.collect_problems(&mut problems);
        if let (Some(dir), Some(icon)) = (dir, &manifest.recipe.icon) {
            if relative_path_problem(icon).is_none() && !dir.join(icon).is_file() {
                problems.add("recipe.icon", format!("file `{icon}` not found in the recipe directory"));
            }
        }
        if problems.0.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid { path, problems: problems.0 })
        }
    }

    /// Checks every rule (for a manifest that came from elsewhere, e.g. JSON).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut problems = Problems::default();
        self.collect_problems(&mut problems);
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid { path: None, problems: problems.0 })
        }
    }

    fn collect_problems(&self, p: &mut Problems) {
        self.check_recipe(p);
        self.check_resources(p);
        self.check_ports(p);
        self.check_limits(p);
        self.check_parameters(p);
        self.check_grants(p);
    }

    fn check_recipe(&self, p: &mut Problems) {
        let r = &self.recipe;
        if !RECIPE_ID.is_match(&r.id) {
            p.add("recipe.id", format!("`{}` must match ^[a-z0-9][a-z0-9-]{{0,62}}$", r.id));
        }
        for (key, value) in [("name", &r.name), ("description", &r.description), ("category", &r.category)] {
            if value.trim().is_empty() {
                p.add(format!("recipe.{key}"), "must not be empty");
            } else if value.contains(['\n', '\r']) {
                p.add(format!("recipe.{key}"), "must be one line");
            }
        }
        if let Some(icon) = &r.icon {
            if let Some(msg) = relative_path_problem(icon) {
                p.add("recipe.icon", msg);
            }
        }
        if let Some(site) = &r.website {
            let rest = site.strip_prefix("https://").or_else(|| site.strip_prefix("http://"));
            match rest {
                Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !site.contains(char::is_whitespace) => {}
                _ => p.add("recipe.website", format!("`{site}` must be an http:// or https:// URL")),
            }
        }
    }

    fn check_resources(&self, p: &mut Problems) {
        let r = &self.resources;
        for (key, range, floor) in [
            ("cores", &r.cores, 1),
            ("memory-mb", &r.memory_mb, 16),
            ("swap-mb", &r.swap_mb, 0),
            ("disk-gb", &r.disk_gb, 1),
        ] {
            let path = format!("resources.{key}");
            if range.min < floor {
                p.add(&path, format!("min {} must be at least {floor}", range.min));
            }
            if range.min > range.default {
                p.add(&path, format!("min {} is above default {}", range.min, range.default));
            }
            if let Some(max) = range.max {
                if range.default > max {
                    p.add(&path, format!("default {} is above max {max}", range.default));
                }
                if range.min > max {
                    p.add(&path, format!("min {} is above max {max}", range.min));
                }
            }
        }
    }

    fn check_ports(&self, p: &mut Problems) {
        let mut seen = BTreeMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            if port.port == 0 {
                p.add(format!("ports[{i}].port"), "must be between 1 and 65535");
            } else if let Some(j) = seen.insert((port.port, port.protocol), i) {
                p.add(
                    format!("ports[{i}]"),
                    format!("{}/{} is already listed in ports[{j}]", port.port, port.protocol),
                );
            }
        }
    }

    fn check_limits(&self, p: &mut Problems) {
        let l = &self.limits;
        if !(1..=MAX_SANDBOX_MEMORY_MB).contains(&l.memory_mb) {
            p.add("limits.memory-mb", format!("{} must be between 1 and {MAX_SANDBOX_MEMORY_MB}", l.memory_mb));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&l.timeout_secs) {
            p.add("limits.timeout-secs", format!("{} must be between 1 and {MAX_TIMEOUT_SECS}", l.timeout_secs));
        }
    }

    fn check_parameters(&self, p: &mut Problems) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, spec) in self.parameters.iter().enumerate() {
            let at = |key: &str| format!("parameters[{i}].{key}");
            if !PARAM_NAME.is_match(&spec.name) {
                p.add(at("name"), format!("`{}` must match ^[a-z][a-z0-9-]*$ (at most 64 characters)", spec.name));
            } else if let Some(j) = seen.insert(&spec.name, i) {
                p.add(at("name"), format!("`{}` is already the name of parameters[{j}]", spec.name));
            }
            let kind = spec.kind;
            let only = |p: &mut Problems, key: &str, present: bool, types: &str| {
                if present {
                    p.add(at(key), format!("only {types} parameters take `{key}` (this one is {kind})"));
                }
            };
            let text = kind.is_text();
            only(p, "pattern", !text && spec.pattern.is_some(), "string and secret");
            only(p, "min-length", !text && spec.min_length.is_some(), "string and secret");
            only(p, "max-length", !text && spec.max_length.is_some(), "string and secret");
            only(p, "min", kind != ParamType::Integer && spec.min.is_some(), "integer");
            only(p, "max", kind != ParamType::Integer && spec.max.is_some(), "integer");
            only(p, "choices", kind != ParamType::Enum && spec.choices.is_some(), "enum");
            only(p, "generate", kind != ParamType::Secret && spec.generate, "secret");
            only(p, "length", kind != ParamType::Secret && spec.length.is_some(), "secret");

            let mut pattern_ok = true;
            let pattern = match (&spec.pattern, text) {
                (Some(pat), true) => match compile_pattern(pat) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        pattern_ok = false;
                        p.add(at("pattern"), e);
                        None
                    }
                },
                _ => None,
            };
            if let (Some(lo), Some(hi), true) = (spec.min_length, spec.max_length, text) {
                if lo > hi {
                    p.add(at("min-length"), format!("{lo} is above max-length {hi}"));
                }
            }
            if let (Some(lo), Some(hi), ParamType::Integer) = (spec.min, spec.max, kind) {
                if lo > hi {
                    p.add(at("min"), format!("{lo} is above max {hi}"));
                }
            }
            if kind == ParamType::Enum {
                match &spec.choices {
                    None => p.add(at("choices"), "an enum parameter needs `choices`"),
                    Some(c) if c.is_empty() => p.add(at("choices"), "must not be empty"),
                    Some(c) => {
                        let mut uniq = BTreeSet::new();
                        for (j, choice) in c.iter().enumerate() {
                            if !uniq.insert(choice) {
                                p.add(format!("parameters[{i}].choices[{j}]"), format!("`{choice}` is listed twice"));
                            }
                        }
                    }
                }
            }
            if spec.required && spec.default.is_some() {
                p.add(at("required"), "a required parameter has no default");
            }
            if kind == ParamType::Secret {
                if spec.default.is_some() {
                    p.add(at("default"), "a secret must not have a default (use generate = true)");
                }
                if spec.generate && spec.required {
                    p.add(at("generate"), "a generated secret cannot be required");
                }
                if let Some(len) = spec.length {
                    if !spec.generate {
                        p.add(at("length"), "only applies with generate = true");
                    }
                    if !SECRET_LENGTH_RANGE.contains(&len) {
                        p.add(
                            at("length"),
                            format!(
                                "{len} must be between {} and {}",
                                SECRET_LENGTH_RANGE.start(),
                                SECRET_LENGTH_RANGE.end()
                            ),
                        );
                    }
                }
                if spec.generate {
                    let len = spec.generated_length();
                    if spec.min_length.is_some_and(|m| len < m) || spec.max_length.is_some_and(|m| len > m) {
                        p.add(at("length"), format!("the generated length {len} is outside min-length/max-length"));
                    }
                    if let Some(re) = &pattern {
                        let samples = [
                            "a".repeat(len as usize),
                            "Z".repeat(len as usize),
                            "7".repeat(len as usize),
                            "aZ7".chars().cycle().take(len as usize).collect::<String>(),
                        ];
                        if samples.iter().any(|s| !re.is_match(s)) {
                            p.add(at("pattern"), "must accept generated values (letters and digits)");
                        }
                    }
                }
            }
            if let (Some(default), false) = (&spec.default, kind == ParamType::Secret) {
                let type_ok = matches!(
                    (kind, default),
                    (ParamType::String | ParamType::Enum, ParamValue::Text(_))
                        | (ParamType::Integer, ParamValue::Integer(_))
                        | (ParamType::Boolean, ParamValue::Boolean(_))
                );
                if !type_ok {
                    p.add(
                        at("default"),
                        format!("must be {} to match type = \"{kind}\", not {}", expected(kind), default.type_name()),
                    );
                } else if pattern_ok {
                    for msg in value_problems(spec, default, pattern.as_ref()) {
                        p.add(at("default"), msg);
                    }
                }
            }
        }
    }

    fn check_grants(&self, p: &mut Problems) {
        let g = &self.grants;
        let has = |c| g.capabilities.contains(&c);
        match (&g.lxc, has(Capability::Lxc)) {
            (Some(_), false) => p.add("grants.lxc", "[grants.lxc] is given but \"lxc\" is not in grants.capabilities"),
            (None, true) => p.add("grants.lxc", "\"lxc\" is granted but its bounds are missing"),
            _ => {}
        }
        if let Some(lxc) = &g.lxc {
            let r = &self.resources;
            for (key, max, range) in [
                ("max-cores", lxc.max_cores, &r.cores),
                ("max-memory-mb", lxc.max_memory_mb, &r.memory_mb),
                ("max-disk-gb", lxc.max_disk_gb, &r.disk_gb),
            ] {
                let path = format!("grants.lxc.{key}");
                let res = key.trim_start_matches("max-");
                if max == 0 {
                    p.add(&path, "must be at least 1");
                } else if max < range.default {
                    p.add(&path, format!("{max} is below resources.{res} default {}", range.default));
                } else if let Some(rmax) = range.max.filter(|&m| max < m) {
                    p.add(
                        &path,
                        format!("{max} is below resources.{res} max {rmax} (the operator could choose what the recipe may not create)"),
                    );
                }
            }
        }
        if !g.proxy.is_empty() && !has(Capability::Proxy) {
            p.add("grants.proxy", "[[grants.proxy]] is given but \"proxy\" is not in grants.capabilities");
        }
        if g.proxy.is_empty() && has(Capability::Proxy) {
            p.add("grants.capabilities", "\"proxy\" is granted but no [[grants.proxy]] service is listed");
        }
        let mut services = BTreeMap::new();
        for (i, pg) in g.proxy.iter().enumerate() {
            if !SERVICE_NAME.is_match(&pg.service) {
                p.add(
                    format!("grants.proxy[{i}].service"),
                    format!("`{}` must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,62}}$", pg.service),
                );
            } else if let Some(j) = services.insert(&pg.service, i) {
                p.add(
                    format!("grants.proxy[{i}].service"),
                    format!("`{}` is already listed in grants.proxy[{j}]", pg.service),
                );
            }
            if pg.commands.is_empty() {
                p.add(format!("grants.proxy[{i}].commands"), "must list at least one command");
            }
            let mut uniq = BTreeSet::new();
            for (j, cmd) in pg.commands.iter().enumerate() {
                let path = format!("grants.proxy[{i}].commands[{j}]");
                if cmd.trim().is_empty() {
                    p.add(path, "must not be empty");
                } else if cmd.trim() != cmd || cmd.chars().any(char::is_control) {
                    p.add(path, format!("{cmd:?} must have no surrounding spaces or control characters"));
                } else if !uniq.insert(cmd) {
                    p.add(path, format!("`{cmd}` is listed twice"));
                }
            }
        }
    }

    /// The grants in plain words (see [`Grants::summary_lines`]).
    pub fn summary_lines(&self) -> Vec<String> {
        self.grants.summary_lines()
    }

    /// What the operator may choose for each resource: `min`, `default`, and `max`
    /// as enforced by [`Manifest::resolve_resources`] (`None`: no bound from the manifest).
    pub fn resource_bounds(&self) -> ResourceSpec {
        let lxc = self.grants.lxc.as_ref().filter(|_| self.grants.allows(Capability::Lxc));
        let with = |r: &ResourceRange, grant: Option<u32>| ResourceRange { max: r.max.or(grant), ..*r };
        ResourceSpec {
            cores: with(&self.resources.cores, lxc.map(|l| l.max_cores)),
            memory_mb: with(&self.resources.memory_mb, lxc.map(|l| l.max_memory_mb)),
            swap_mb: with(&self.resources.swap_mb, None),
            disk_gb: with(&self.resources.disk_gb, lxc.map(|l| l.max_disk_gb)),
        }
    }

    /// The operator's resource choices within bounds, defaults filled in.
    pub fn resolve_resources(&self, overrides: &ResourceOverrides) -> Result<ResolvedResources, ParamErrors> {
        let bounds = self.resource_bounds();
        let mut problems = Vec::new();
        let mut pick = |key: &str, range: &ResourceRange, given: Option<u32>| -> u32 {
            let Some(v) = given else { return range.default };
            if v < range.min {
                problems.push(ParamProblem {
                    name: key.into(),
                    message: format!("{v} is below the minimum {}", range.min),
                });
            }
            if let Some(max) = range.max.filter(|&m| v > m) {
                problems.push(ParamProblem { name: key.into(), message: format!("{v} is above the maximum {max}") });
            }
            v
        };
        let resolved = ResolvedResources {
            cores: pick("cores", &bounds.cores, overrides.cores),
            memory_mb: pick("memory-mb", &bounds.memory_mb, overrides.memory_mb),
            swap_mb: pick("swap-mb", &bounds.swap_mb, overrides.swap_mb),
            disk_gb: pick("disk-gb", &bounds.disk_gb, overrides.disk_gb),
        };
        if problems.is_empty() {
            Ok(resolved)
        } else {
            Err(ParamErrors(problems))
        }
    }

    /// Validates operator-supplied parameters (as typed on a command line or in a
    /// form): fills defaults, generates secrets marked `generate = true` that were
    /// not given, parses integers and booleans (true/false/yes/no/1/0), checks every
    /// rule. Unknown names and missing required parameters are errors. Values come
    /// in manifest order; a parameter without value, default or generation is left out.
    pub fn resolve_params(&self, given: &BTreeMap<String, String>) -> Result<ResolvedParams, ParamErrors> {
        let mut problems = Vec::new();
        for name in given.keys() {
            if !self.parameters.iter().any(|s| &s.name == name) {
                let message = if self.parameters.is_empty() {
                    "unknown parameter (this recipe takes none)".to_owned()
                } else {
                    format!("unknown parameter (known: {})", join(self.parameters.iter().map(|s| s.name.as_str())))
                };
                problems.push(ParamProblem { name: name.clone(), message });
            }
        }
        let mut out = ResolvedParams::default();
        for spec in &self.parameters {
            let problem = |message: String| ParamProblem { name: spec.name.clone(), message };
            if spec.is_secret() {
                out.secret_names.insert(spec.name.clone());
            }
            let pattern = match spec.pattern.as_deref().filter(|_| spec.kind.is_text()).map(compile_pattern) {
                Some(Ok(re)) => Some(re),
                Some(Err(e)) => {
                    problems.push(problem(format!("the manifest's pattern is invalid: {e}")));
                    continue;
                }
                None => None,
            };
            let value = match given.get(&spec.name) {
                Some(raw) => match parse_value(spec, raw) {
                    Ok(v) => v,
                    Err(msg) => {
                        problems.push(problem(msg));
                        continue;
                    }
                },
                None => {
                    if let Some(d) = &spec.default {
                        d.clone()
                    } else if spec.is_secret() && spec.generate {
                        out.generated.insert(spec.name.clone());
                        ParamValue::Text(generate_secret(spec.generated_length()))
                    } else if spec.required {
                        problems.push(problem("is required".into()));
                        continue;
                    } else {
                        continue;
                    }
                }
            };
            let msgs = value_problems(spec, &value, pattern.as_ref());
            if msgs.is_empty() {
                out.values.push((spec.name.clone(), value));
            } else {
                problems.extend(msgs.into_iter().map(problem));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ParamErrors(problems))
        }
    }
}

fn expected(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String | ParamType::Secret | ParamType::Enum => "a string",
        ParamType::Integer => "an integer",
        ParamType::Boolean => "a boolean",
    }
}

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    items.into_iter().map(|s| s.as_ref().to_owned()).collect::<Vec<_>>().join(", ")
}

fn relative_path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("must not be empty".into());
    }
    if path.contains('\\') {
        return Some(format!("`{path}` must use / as separator"));
    }
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        None
    } else {
        Some(format!("`{path}` must be a relative path inside the recipe directory (no `..`, not absolute)"))
    }
}

/// Compiled parameter patterns. Manifests are validated when read and every
/// deploy validates its values again: compiling the same pattern each time
/// costs more than the rest of a deploy's validation. Bounded, in case many
/// manifests come and go.
static PATTERNS: LazyLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> = LazyLock::new(Default::default);
const PATTERNS_KEPT: usize = 1024;

/// Compiles a parameter pattern (or finds it compiled); the error is one line.
fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let cache = || PATTERNS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(compiled) = cache().get(pattern) {
        return Ok(compiled.clone());
    }
    let compiled = compile_pattern_uncached(pattern)?;
    let mut patterns = cache();
    if patterns.len() >= PATTERNS_KEPT {
        patterns.clear();
    }
    patterns.insert(pattern.to_string(), compiled.clone());
    Ok(compiled)
}

fn compile_pattern_uncached(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        let detail = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_owned());
        format!("invalid regex `{pattern}`: {detail}")
    })
}

/// Parses an operator's string for `spec`'s type. Never echoes a secret.
fn parse_value(spec: &ParameterSpec, raw: &str) -> Result<ParamValue, String> {
    match spec.kind {
        ParamType::String | ParamType::Secret | ParamType::Enum => Ok(ParamValue::Text(raw.to_owned())),
        ParamType::Integer => {
            raw.trim().parse::<i64>().map(ParamValue::Integer).map_err(|_| format!("must be an integer (got {raw:?})"))
        }
        ParamType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(ParamValue::Boolean(true)),
            "false" | "no" | "0" => Ok(ParamValue::Boolean(false)),
            _ => Err(format!("must be true or false (or yes/no, 1/0) (got {raw:?})")),
        },
    }
}

/// Every rule `value` breaks (the type already matches). Never echoes a secret.
fn value_problems(spec: &ParameterSpec, value: &ParamValue, pattern: Option<&Regex>) -> Vec<String> {
    let mut out = Vec::new();
    let secret = spec.is_secret();
    match (spec.kind, value) {
        (ParamType::String | ParamType::Secret, ParamValue::Text(s)) => {
            let len = s.chars().count();
            let got = |len: usize| {
                if secret {
                    String::new()
                } else {
                    format!(" (got {len})")
                }
            };
            if let Some(min) = spec.min_length.filter(|&m| len < m as usize) {
                out.push(format!("must be at least {min} characters long{}", got(len)));
            }
            if let Some(max) = spec.max_length.filter(|&m| len > m as usize) {
                out.push(format!("must be at most {max} characters long{}", got(len)));
            }
            if let Some(re) = pattern.filter(|re| !re.is_match(s)) {
                if secret {
                    out.push(format!("does not match the pattern `{}`", re.as_str()));
                } else {
                    out.push(format!("{s:?} does not match the pattern `{}`", re.as_str()));
                }
            }
        }
        (ParamType::Enum, ParamValue::Text(s)) => {
            let choices = spec.choices.as_deref().unwrap_or_default();
            if !choices.iter().any(|c| c == s) {
                out.push(format!("must be one of: {} (got {s:?})", join(choices)));
            }
        }
        (ParamType::Integer, ParamValue::Integer(i)) => {
            if let Some(min) = spec.min.filter(|&m| *i < m) {
                out.push(format!("must be at least {min} (got {i})"));
            }
            if let Some(max) = spec.max.filter(|&m| *i > m) {
                out.push(format!("must be at most {max} (got {i})"));
            }
        }
        (ParamType::Boolean, ParamValue::Boolean(_)) => {}
        (kind, v) => out.push(format!("must be {}, not {}", expected(kind), v.type_name())),
    }
    out
}

/// A random alphanumeric string (`[A-Za-z0-9]`) from the thread's CSPRNG.
fn generate_secret(length: u32) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(length as usize).map(char::from).collect()
}

// ---------------------------------------------------------------------------
// Resolved values
// ---------------------------------------------------------------------------

/// Parameters after [`Manifest::resolve_params`].
///
/// `Debug` and `Display` redact every secret's value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedParams {
    /// In manifest order.
    pub values: Vec<(String, ParamValue)>,
    /// Every secret parameter of the manifest.
    pub secret_names: BTreeSet<String>,
    /// Secrets the host generated in this call.
    pub generated: BTreeSet<String>,
}

/// Shown instead of a secret's value.
pub const REDACTED: &str = "<redacted>";

impl ResolvedParams {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_names.contains(name)
    }

    /// Name and printable value of each parameter, secrets replaced by [`REDACTED`].
    pub fn redacted(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(n, v)| (n.clone(), if self.is_secret(n) { REDACTED.to_owned() } else { v.to_string() }))
            .collect()
    }
}

impl fmt::Debug for ResolvedParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Values<'a>(&'a ResolvedParams);
        impl fmt::Debug for Values<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for (n, v) in &self.0.values {
                    if self.0.is_secret(n) {
                        m.entry(n, &format_args!("{REDACTED}"));
                    } else {
                        m.entry(n, v);
                    }
                }
                m.finish()
            }
        }
        f.debug_struct("ResolvedParams")
            .field("values", &Values(self))
            .field("secret_names", &self.secret_names)
            .field("generated", &self.generated)
            .finish()
    }
}

/// One `name = value` per line; secrets show as `<redacted>` (`<redacted> (generated)`).
impl fmt::Display for ResolvedParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if self.is_secret(n) {
                let gen = if self.generated.contains(n) { " (generated)" } else { "" };
                write!(f, "{n} = {REDACTED}{gen}")?;
            } else {
                match v {
                    ParamValue::Text(s) => write!(f, "{n} = {s:?}")?,
                    other => write!(f, "{n} = {other}")?,
                }
            }
        }
        Ok(())
    }
}

/// Container resources after [`Manifest::resolve_resources`] (the WIT `resources`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedResources {
    pub cores: u32,
    pub memory_mb: u32,
    pub swap_mb: u32,
    pub disk_gb: u32,
}

/// The operator's resource choices; `None` takes the manifest's default.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct ResourceOverrides {
    pub cores: Option<u32>,
    pub memory_mb: Option<u32>,
    pub swap_mb: Option<u32>,
    pub disk_gb: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[recipe]
id = "nginx"
name = "nginx"
version = "0.1.0"
description = "A small web server."
category = "web"
icon = "icon.svg"
website = "https://nginx.org"
notes = "Needs nothing."

[resources]
cores = { min = 1, default = 1, max = 4 }
memory-mb = { min = 128, default = 512 }
swap-mb = { min = 0, default = 512 }
disk-gb = { min = 2, default = 4 }

[[ports]]
port = 80
protocol = "tcp"
description = "HTTP"

[[ports]]
port = 53
protocol = "udp"

[limits]
memory-mb = 32
timeout-secs = 600

[[parameters]]
name = "greeting"
type = "string"
description = "What the page says."
default = "Hello"
pattern = "^[^<>]*$"
min-length = 1
max-length = 20

[[parameters]]
name = "admin-password"
type = "secret"
generate = true
length = 24

[[parameters]]
name = "port"
type = "integer"
default = 8080
min = 1
max = 65535

[[parameters]]
name = "tls"
type = "boolean"
default = false

[[parameters]]
name = "flavour"
type = "enum"
choices = ["light", "full"]
default = "light"

[[parameters]]
name = "domain"
type = "string"
required = true

[[parameters]]
name = "comment"
type = "string"

[grants]
capabilities = ["lxc", "exec", "files", "probe", "proxy"]

[grants.lxc]
max-cores = 4
max-memory-mb = 2048
features = ["nesting", "keyctl"]

[[grants.proxy]]
service = "nextcloud-proxy"
commands = ["php occ files:scan", "php occ status"]
"#;

    const MINIMAL: &str = r#"
[recipe]
id = "hello"
name = "Hello"
version = "1.2.3-beta.1"
description = "Says hello."
category = "demo"
"#;

    fn full() -> Manifest {
        Manifest::from_toml_str(FULL).expect("FULL is valid")
    }

    /// MINIMAL plus `extra` appended.
    fn with(extra: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_toml_str(&format!("{MINIMAL}\n{extra}"))
    }

    fn problems(extra: &str) -> Vec<String> {
        match with(extra) {
            Err(ManifestError::Invalid { problems, path }) => {
                assert!(path.is_none());
                problems
            }
            Err(other) => panic!("expected Invalid, got {other}"),
            Ok(_) => panic!("expected Invalid, got a valid manifest for:\n{extra}"),
        }
    }

    fn toml_error(text: &str) -> String {
        match Manifest::from_toml_str(text) {
            Err(ManifestError::Toml { message, path }) => {
                assert!(path.is_none());
                message
            }
            Err(other) => panic!("expected a TOML error, got {other}"),
            Ok(_) => panic!("expected a TOML error"),
        }
    }

    #[track_caller]
    fn has(problems: &[String], path: &str, needle: &str) {
        let prefix = format!("{path}: ");
        assert!(
            problems.iter().any(|p| p.starts_with(&prefix) && p.contains(needle)),
            "no problem `{path}: ...{needle}...` in:\n{}",
            problems.join("\n")
        );
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn params(decl: &str) -> Manifest {
        with(decl).unwrap_or_else(|e| panic!("{e}"))
    }

    // ---- parsing --------------------------------------------------------

    #[test]
    fn full_manifest_parses() {
        let m = full();
        assert_eq!(m.recipe.id, "nginx");
        assert_eq!(m.recipe.version, semver::Version::new(0, 1, 0));
        assert_eq!(m.recipe.icon.as_deref(), Some("icon.svg"));
        assert_eq!(m.resources.cores, ResourceRange { min: 1, default: 1, max: Some(4) });
        assert_eq!(m.resources.memory_mb.default, 512);
        assert_eq!(m.ports.len(), 2);
        assert_eq!(m.ports[1].protocol, Protocol::Udp);
        assert_eq!(m.limits, SandboxLimits { memory_mb: 32, timeout_secs: 600 });
        assert_eq!(m.limits.timeout(), std::time::Duration::from_secs(600));
        assert_eq!(m.limits.memory_bytes(), 32 << 20);
        assert_eq!(m.parameters.len(), 7);
        assert_eq!(m.parameters[0].default, Some(ParamValue::Text("Hello".into())));
        assert_eq!(m.parameters[2].default, Some(ParamValue::Integer(8080)));
        assert_eq!(m.parameters[3].default, Some(ParamValue::Boolean(false)));
        assert!(m.parameters[1].is_secret() && m.parameters[1].generate);
        assert_eq!(m.parameters[1].generated_length(), 24);
        let lxc = m.grants.lxc.as_ref().unwrap();
        assert_eq!(lxc.max_cores, 4);
        assert_eq!(lxc.max_memory_mb, 2048);
        assert_eq!(lxc.max_disk_gb, 4, "absent bound falls back to resources.disk-gb default");
        assert_eq!(lxc.features, [LxcFeature::Nesting, LxcFeature::Keyctl].into());
        assert_eq!(m.grants.proxy[0].commands.len(), 2);
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = with("").unwrap();
        assert_eq!(m.resources, ResourceSpec::default());
        assert_eq!(m.resources.cores, ResourceRange { min: 1, default: 1, max: None });
        assert_eq!(m.resources.memory_mb, ResourceRange { min: 128, default: 512, max: None });
        assert_eq!(m.resources.swap_mb, ResourceRange { min: 0, default: 512, max: None });
        assert_eq!(m.resources.disk_gb, ResourceRange { min: 2, default: 4, max: None });
        assert_eq!(m.limits, SandboxLimits { memory_mb: 64, timeout_secs: 900 });
        assert!(m.ports.is_empty() && m.parameters.is_empty());
        assert_eq!(m.grants, Grants::default());
        assert!(m.grants.allows(Capability::Progress));
        assert_eq!(m.summary_lines(), vec!["uses no capabilities (only reports progress)"]);
    }

    #[test]
    fn round_trips_through_json_and_toml() {
        let m = full();
        let json = serde_json::to_string_pretty(&m).unwrap();
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        back.validate().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["resources"]["memory-mb"]["default"], 512);
        assert_eq!(v["parameters"][2]["default"], 8080);
        assert_eq!(v["parameters"][2]["type"], "integer");
        assert_eq!(v["grants"]["capabilities"], serde_json::json!(["lxc", "exec", "files", "proxy", "probe"]));
        assert_eq!(v["grants"]["lxc"]["features"], serde_json::json!(["nesting", "keyctl"]));

        let text = toml::to_string(&m).unwrap();
        let again = Manifest::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, m);

        let min = with("").unwrap();
        assert_eq!(Manifest::from_toml_str(&toml::to_string(&min).unwrap()).unwrap(), min);
    }

    #[test]
    fn json_manifest_is_validated_on_demand() {
        let mut m = full();
        m.recipe.id = "Bad Id".into();
        m.grants.capabilities.remove(&Capability::Lxc);
        let Err(ManifestError::Invalid { problems, .. }) = m.validate() else { panic!() };
        has(&problems, "recipe.id", "Bad Id");
        has(&problems, "grants.lxc", "\"lxc\" is not in grants.capabilities");
    }

    #[test]
    fn syntax_errors_keep_line_and_column() {
        let msg = toml_error("[recipe]\nid = \"x\"\nname = \n");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("column"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_location() {
        for (extra, key) in [
            ("colour = 1", "colour"),
            ("[limits]\nmemory = 64", "memory"),
            ("[[parameters]]\nname = \"a\"\ntype = \"string\"\ndefualt = \"x\"", "defualt"),
            ("[resources]\ncores = { min = 1, defualt = 2 }", "defualt"),
            ("[grants]\ncapabilities = []\nlxcc = 1", "lxcc"),
            ("[grants]\ncapabilities = [\"lxc\"]\n[grants.lxc]\nmax-cpus = 2", "max-cpus"),
            ("[[ports]]\nport = 80\nproto = \"tcp\"", "proto"),
            ("[[grants.proxy]]\nservice = \"s\"\ncommand = [\"x\"]", "command"),
        ] {
            let msg = toml_error(&format!("{MINIMAL}\n{extra}"));
            assert!(msg.contains(&format!("unknown field `{key}`")), "{extra}: {msg}");
            assert!(msg.contains("line "), "{extra}: {msg}");
        }
        let msg = toml_error(&MINIMAL.replace("category", "categroy"));
        assert!(msg.contains("categroy"), "{msg}");
    }

    #[test]
    fn structural_errors_are_toml_errors() {
        for (extra, needle) in [
            ("[[parameters]]\nname = \"a\"\ntype = \"float\"", "float"),
            ("[[ports]]\nport = 70000", "70000"),
            ("[[ports]]\nport = 80\nprotocol = \"sctp\"", "sctp"),
            ("[resources]\ncores = { min = -1, default = 1 }", "-1"),
            ("[resources]\ncores = { min = 1 }", "default"),
            ("[[parameters]]\nname = \"a\"\ntype = \"string\"\ndefault = 1.5", "a string, integer or boolean"),
        ] {
            let msg = toml_error(&format!("{MINIMAL}\n{extra}"));
            assert!(msg.contains(needle), "{extra}: {msg}");
        }
        let msg = toml_error(&MINIMAL.replace("1.2.3-beta.1", "1.2"));
        assert!(msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn recipe_rules() {
        let text = MINIMAL
            .replace("id = \"hello\"", "id = \"-Hello\"")
            .replace("name = \"Hello\"", "name = \" \"")
            .replace("Says hello.", "two\\nlines")
            .replace("category = \"demo\"", "category = \"\"\nicon = \"../icon.svg\"\nwebsite = \"ftp://x\"");
        let Err(ManifestError::Invalid { problems, .. }) = Manifest::from_toml_str(&text) else { panic!() };
        has(&problems, "recipe.id", "-Hello");
        has(&problems, "recipe.name", "empty");
        has(&problems, "recipe.description", "one line");
        has(&problems, "recipe.category", "empty");
        has(&problems, "recipe.icon", "..");
        has(&problems, "recipe.website", "ftp://x");
        assert_eq!(problems.len(), 6, "{problems:#?}");

        for icon in ["/etc/passwd", "a/../../b", "a\\\\b", ""] {
            let t = MINIMAL.replace("category = \"demo\"", &format!("category = \"demo\"\nicon = \"{icon}\""));
            assert!(Manifest::from_toml_str(&t).is_err(), "icon {icon:?} accepted");
        }
        let long = format!("id = \"{}\"", "a".repeat(64));
        assert!(Manifest::from_toml_str(&MINIMAL.replace("id = \"hello\"", &long)).is_err());
        let ok = format!("id = \"{}\"", "a".repeat(63));
        assert!(Manifest::from_toml_str(&MINIMAL.replace("id = \"hello\"", &ok)).is_ok());
        let t = MINIMAL.replace("category = \"demo\"", "category = \"demo\"\nicon = \"img/./icon.png\"");
        assert!(Manifest::from_toml_str(&t).is_ok());
    }

    #[test]
    fn resource_ports_and_limits_rules() {
        let p = problems(
            r#"
[resources]
cores = { min = 0, default = 1 }
memory-mb = { min = 1024, default = 512 }
disk-gb = { min = 2, default = 10, max = 8 }
[[ports]]
port = 0
[[ports]]
port = 80
[[ports]]
port = 80
protocol = "tcp"
[[ports]]
port = 80
protocol = "udp"
[limits]
memory-mb = 0
timeout-secs = 100000
"#,
        );
        has(&p, "resources.cores", "at least 1");
        has(&p, "resources.memory-mb", "min 1024 is above default 512");
        has(&p, "resources.disk-gb", "default 10 is above max 8");
        has(&p, "ports[0].port", "between 1 and 65535");
        has(&p, "ports[2]", "80/tcp is already listed in ports[1]");
        has(&p, "limits.memory-mb", "between 1 and 4096");
        has(&p, "limits.timeout-secs", "between 1 and 86400");
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn parameter_rules_are_all_reported() {
        let p = problems(
            r#"
[[parameters]]
name = "Bad_Name"
type = "string"

[[parameters]]
name = "dup"
type = "string"

[[parameters]]
name = "dup"
type = "integer"
min = 10
max = 1
default = 20

[[parameters]]
name = "wrong-keys"
type = "boolean"
pattern = "x"
min-length = 1
max-length = 2
min = 1
max = 2
choices = ["a"]
generate = true
length = 20

[[parameters]]
name = "bad-pattern"
type = "string"
pattern = "^[a-"

[[parameters]]
name = "lengths"
type = "string"
min-length = 5
max-length = 2

[[parameters]]
name = "no-choices"
type = "enum"

[[parameters]]
name = "empty-choices"
type = "enum"
choices = []

[[parameters]]
name = "dup-choices"
type = "enum"
choices = ["a", "b", "a"]
default = "c"

[[parameters]]
name = "req-default"
type = "string"
required = true
default = "x"

[[parameters]]
name = "secret-default"
type = "secret"
default = "hunter2"

[[parameters]]
name = "gen-required"
type = "secret"
generate = true
required = true
length = 8

[[parameters]]
name = "length-alone"
type = "secret"
length = 20

[[parameters]]
name = "gen-too-long"
type = "secret"
generate = true
max-length = 16

[[parameters]]
name = "gen-pattern"
type = "secret"
generate = true
pattern = "^[a-z]+$"

[[parameters]]
name = "type-mismatch"
type = "integer"
default = "8080"

[[parameters]]
name = "bool-mismatch"
type = "boolean"
default = 1

[[parameters]]
name = "short"
type = "string"
min-length = 3
default = "ab"

[[parameters]]
name = "long"
type = "string"
max-length = 3
default = "abcd"

[[parameters]]
name = "patterned"
type = "string"
pattern = "^[a-z]+$"
default = "ABC"

[[parameters]]
name = "low"
type = "integer"
min = 5
default = 4
"#,
        );
        has(&p, "parameters[0].name", "Bad_Name");
        has(&p, "parameters[2].name", "already the name of parameters[1]");
        has(&p, "parameters[2].min", "10 is above max 1");
        has(&p, "parameters[2].default", "at most 1 (got 20)");
        for key in ["pattern", "min-length", "max-length", "min", "max", "choices", "generate", "length"] {
            has(&p, &format!("parameters[3].{key}"), "(this one is boolean)");
        }
        has(&p, "parameters[4].pattern", "invalid regex `^[a-`");
        has(&p, "parameters[5].min-length", "5 is above max-length 2");
        has(&p, "parameters[6].choices", "needs `choices`");
        has(&p, "parameters[7].choices", "must not be empty");
        has(&p, "parameters[8].choices[2]", "`a` is listed twice");
        has(&p, "parameters[8].default", "must be one of: a, b, a (got \"c\")");
        has(&p, "parameters[9].required", "has no default");
        has(&p, "parameters[10].default", "must not have a default");
        has(&p, "parameters[11].generate", "cannot be required");
        has(&p, "parameters[11].length", "8 must be between 16 and 128");
        has(&p, "parameters[12].length", "only applies with generate = true");
        has(&p, "parameters[13].length", "generated length 32 is outside");
        has(&p, "parameters[14].pattern", "must accept generated values");
        has(&p, "parameters[15].default", "must be an integer to match type = \"integer\", not a string");
        has(&p, "parameters[16].default", "must be a boolean");
        has(&p, "parameters[17].default", "at least 3 characters long (got 2)");
        has(&p, "parameters[18].default", "at most 3 characters long (got 4)");
        has(&p, "parameters[19].default", "\"ABC\" does not match the pattern `^[a-z]+$`");
        has(&p, "parameters[20].default", "at least 5 (got 4)");
        assert_eq!(p.len(), 31, "{p:#?}");
        assert!(!p.iter().any(|x| x.contains("hunter2")), "a secret default is echoed");
    }

    #[test]
    fn unknown_capabilities_and_features_are_all_reported() {
        let p = problems(
            r#"
[grants]
capabilities = ["lxc", "exce", "files", "lxc", "network"]
[grants.lxc]
features = ["nesting", "privileged", "nesting"]
"#,
        );
        has(
            &p,
            "grants.capabilities[1]",
            "unknown capability `exce` (known: lxc, exec, files, proxy, probe, progress)",
        );
        has(&p, "grants.capabilities[3]", "`lxc` is listed twice");
        has(&p, "grants.capabilities[4]", "unknown capability `network`");
        has(&p, "grants.lxc.features[1]", "unknown feature `privileged` (known: nesting, keyctl, fuse)");
        has(&p, "grants.lxc.features[2]", "`nesting` is listed twice");
        assert_eq!(p.len(), 5, "{p:#?}");
    }

    #[test]
    fn grant_consistency_rules() {
        let p = problems(
            r#"
[resources]
cores = { min = 1, default = 2, max = 8 }
memory-mb = { min = 128, default = 1024 }
[grants]
capabilities = ["exec"]
[grants.lxc]
max-cores = 4
max-memory-mb = 512
max-disk-gb = 0
[[grants.proxy]]
service = "bad service"
commands = []
[[grants.proxy]]
service = "svc"
commands = ["ok", "", " padded", "ok"]
[[grants.proxy]]
service = "svc"
commands = ["x"]
"#,
        );
        has(&p, "grants.lxc", "[grants.lxc] is given but \"lxc\" is not in grants.capabilities");
        has(&p, "grants.lxc.max-cores", "4 is below resources.cores max 8");
        has(&p, "grants.lxc.max-memory-mb", "512 is below resources.memory-mb default 1024");
        has(&p, "grants.lxc.max-disk-gb", "at least 1");
        has(&p, "grants.proxy", "\"proxy\" is not in grants.capabilities");
        has(&p, "grants.proxy[0].service", "bad service");
        has(&p, "grants.proxy[0].commands", "at least one command");
        has(&p, "grants.proxy[1].commands[1]", "must not be empty");
        has(&p, "grants.proxy[1].commands[2]", "surrounding spaces");
        has(&p, "grants.proxy[1].commands[3]", "`ok` is listed twice");
        has(&p, "grants.proxy[2].service", "already listed in grants.proxy[1]");
        assert_eq!(p.len(), 11, "{p:#?}");

        let p = problems("[grants]\ncapabilities = [\"proxy\"]");
        has(&p, "grants.capabilities", "no [[grants.proxy]] service is listed");
    }

    #[test]
    fn lxc_capability_without_table_takes_bounds_from_resources() {
        let m = with(
            r#"
[resources]
cores = { min = 1, default = 2, max = 6 }
memory-mb = { min = 128, default = 1024 }
[grants]
capabilities = ["lxc"]
"#,
        )
        .unwrap();
        let lxc = m.grants.lxc.unwrap();
        assert_eq!((lxc.max_cores, lxc.max_memory_mb, lxc.max_disk_gb), (6, 1024, 4));
        assert!(lxc.features.is_empty());
    }

    #[test]
    fn invalid_error_lists_every_problem() {
        let err = with("[limits]\nmemory-mb = 0\ntimeout-secs = 0").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("recipe manifest is invalid (2 problems):"), "{text}");
        assert!(text.contains("\n  - limits.memory-mb: "), "{text}");
        assert!(text.contains("\n  - limits.timeout-secs: "), "{text}");
    }

    // ---- load -------------------------------------------------------------

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let n: u64 = rand::random();
            let dir = std::env::temp_dir().join(format!("manifest-test-{tag}-{}-{n:x}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_reads_the_recipe_dir_and_names_the_file() {
        let dir = TempDir::new("load");
        let file = dir.0.join("recipe.toml");

        match Manifest::load(&dir.0) {
            Err(ManifestError::Io { path, .. }) => assert_eq!(path, file),
            other => panic!("{other:?}"),
        }
        let err = Manifest::load(&dir.0).unwrap_err().to_string();
        assert!(err.contains("recipe.toml"), "{err}");

        std::fs::write(&file, FULL).unwrap();
        match Manifest::load(&dir.0) {
            Err(ManifestError::Invalid { path, problems }) => {
                assert_eq!(path.as_deref(), Some(file.as_path()));
                assert_eq!(problems, vec!["recipe.icon: file `icon.svg` not found in the recipe directory"]);
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.0.join("icon.svg"), "<svg/>").unwrap();
        assert_eq!(Manifest::load(&dir.0).unwrap(), full());

        std::fs::write(&file, "[recipe\n").unwrap();
        let err = Manifest::load(&dir.0).unwrap_err();
        assert!(matches!(&err, ManifestError::Toml { path: Some(p), .. } if *p == file));
        let text = err.to_string();
        assert!(text.starts_with(&file.display().to_string()) && text.contains("line 1"), "{text}");

        std::fs::write(&file, format!("{MINIMAL}\n[limits]\nmemory-mb = 0")).unwrap();
        let text = Manifest::load(&dir.0).unwrap_err().to_string();
        assert!(text.starts_with(&format!("{} is invalid (1 problem):", file.display())), "{text}");
    }

    // ---- resolve_params -------------------------------------------------

    #[test]
    fn resolve_fills_defaults_in_manifest_order() {
        let m = full();
        let r = m.resolve_params(&given(&[("domain", "example.org")])).unwrap();
        let names: Vec<_> = r.values.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["greeting", "admin-password", "port", "tls", "flavour", "domain"], "comment has no value");
        assert_eq!(r.get("greeting"), Some(&ParamValue::Text("Hello".into())));
        assert_eq!(r.get("port"), Some(&ParamValue::Integer(8080)));
        assert_eq!(r.get("tls"), Some(&ParamValue::Boolean(false)));
        assert_eq!(r.get("flavour"), Some(&ParamValue::Text("light".into())));
        assert_eq!(r.get("domain"), Some(&ParamValue::Text("example.org".into())));
        assert_eq!(r.get("comment"), None);
        assert_eq!(r.secret_names, ["admin-password".to_string()].into());
        assert_eq!(r.generated, ["admin-password".to_string()].into());
    }

    #[test]
    fn resolve_takes_given_values() {
        let m = full();
        let r = m
            .resolve_params(&given(&[
                ("greeting", "Hi there"),
                ("admin-password", "correct horse battery"),
                ("port", " 443 "),
                ("tls", "YES"),
                ("flavour", "full"),
                ("domain", "a.example"),
                ("comment", ""),
            ]))
            .unwrap();
        assert_eq!(r.get("greeting").unwrap().as_str(), Some("Hi there"));
        assert_eq!(r.get("admin-password").unwrap().as_str(), Some("correct horse battery"));
        assert_eq!(r.get("port").unwrap().as_i64(), Some(443));
        assert_eq!(r.get("tls").unwrap().as_bool(), Some(true));
        assert_eq!(r.get("flavour").unwrap().as_str(), Some("full"));
        assert_eq!(r.get("comment").unwrap().as_str(), Some(""));
        assert!(r.generated.is_empty(), "a given secret is not generated");
        assert!(r.is_secret("admin-password"));
    }

    #[test]
    fn booleans_and_integers_parse() {
        let m = params(
            "[[parameters]]\nname = \"b\"\ntype = \"boolean\"\n[[parameters]]\nname = \"i\"\ntype = \"integer\"",
        );
        for (raw, want) in [
            ("true", true),
            ("false", false),
            ("yes", true),
            ("no", false),
            ("1", true),
            ("0", false),
            ("True", true),
            (" NO ", false),
        ] {
            let r = m.resolve_params(&given(&[("b", raw)])).unwrap();
            assert_eq!(r.get("b"), Some(&ParamValue::Boolean(want)), "{raw}");
        }
        for raw in ["maybe", "", "2", "y"] {
            let e = m.resolve_params(&given(&[("b", raw)])).unwrap_err();
            assert_eq!(e.0.len(), 1);
            assert!(e.0[0].message.starts_with("must be true or false"), "{e}");
        }
        for (raw, want) in [("-5", -5), ("+7", 7), ("9223372036854775807", i64::MAX), ("0", 0)] {
            let r = m.resolve_params(&given(&[("i", raw)])).unwrap();
            assert_eq!(r.get("i"), Some(&ParamValue::Integer(want)), "{raw}");
        }
        for raw in ["1.5", "abc", "", "9223372036854775808", "0x10"] {
            let e = m.resolve_params(&given(&[("i", raw)])).unwrap_err();
            assert_eq!(e.0[0].name, "i");
            assert!(e.0[0].message.starts_with("must be an integer"), "{e}");
        }
    }

    #[test]
    fn every_value_rule_is_checked() {
        let m = full();
        let base = [("domain", "d")];
        let case = |name: &str, raw: &str, needle: &str| {
            let mut g = given(&base);
            g.insert(name.into(), raw.into());
            let e = m.resolve_params(&g).unwrap_err();
            assert!(e.mentions(name), "{e}");
            assert!(e.to_string().contains(needle), "{name}={raw}: {e}");
        };
        case("greeting", "", "at least 1 characters long (got 0)");
        case("greeting", &"x".repeat(21), "at most 20 characters long (got 21)");
        case("greeting", "<b>", "\"<b>\" does not match the pattern `^[^<>]*$`");
        case("port", "0", "at least 1 (got 0)");
        case("port", "70000", "at most 65535 (got 70000)");
        case("flavour", "Light", "must be one of: light, full (got \"Light\")");
        // Characters, not bytes.
        let r = m.resolve_params(&given(&[("domain", "d"), ("greeting", &"é".repeat(20))]));
        assert!(r.is_ok());
    }

    #[test]
    fn unknown_missing_and_many_errors_at_once() {
        let m = full();
        let e = m
            .resolve_params(&given(&[("greting", "x"), ("port", "abc"), ("flavour", "huge"), ("tls", "perhaps")]))
            .unwrap_err();
        let names: Vec<_> = e.0.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["greting", "port", "tls", "flavour", "domain"], "{e}");
        assert!(e.0[0].message.starts_with("unknown parameter (known: greeting, admin-password,"), "{e}");
        assert_eq!(e.0[4].message, "is required");
        let text = e.to_string();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().any(|l| l == "domain: is required"), "{text}");

        let none = with("").unwrap();
        let e = none.resolve_params(&given(&[("x", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "x: unknown parameter (this recipe takes none)");
        assert!(none.resolve_params(&BTreeMap::new()).unwrap().values.is_empty());
    }

    #[test]
    fn secrets_are_generated() {
        let m = params(
            r#"
[[parameters]]
name = "a"
type = "secret"
generate = true
[[parameters]]
name = "b"
type = "secret"
generate = true
length = 100
[[parameters]]
name = "c"
type = "secret"
"#,
        );
        let one = m.resolve_params(&BTreeMap::new()).unwrap();
        let two = m.resolve_params(&BTreeMap::new()).unwrap();
        let a = one.get("a").unwrap().as_str().unwrap();
        let b = one.get("b").unwrap().as_str().unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(b.len(), 100);
        assert!(a.chars().chain(b.chars()).all(|c| c.is_ascii_alphanumeric()), "{a} {b}");
        assert_ne!(a, b);
        assert_ne!(a, two.get("a").unwrap().as_str().unwrap());
        assert_ne!(b, two.get("b").unwrap().as_str().unwrap());
        assert_eq!(one.get("c"), None, "not generated, not given: absent");
        assert_eq!(one.generated, ["a".to_string(), "b".to_string()].into());
        assert_eq!(one.secret_names, ["a".to_string(), "b".to_string(), "c".to_string()].into());
        // Over many draws, the charset covers upper, lower and digits.
        let mut all = String::new();
        for _ in 0..20 {
            all.push_str(m.resolve_params(&BTreeMap::new()).unwrap().get("b").unwrap().as_str().unwrap());
        }
        assert!(all.chars().any(|c| c.is_ascii_uppercase()));
        assert!(all.chars().any(|c| c.is_ascii_lowercase()));
        assert!(all.chars().any(|c| c.is_ascii_digit()));
    }

    #[test]
    fn secret_values_are_never_shown() {
        let m = params(
            r#"
[[parameters]]
name = "user"
type = "string"
default = "admin"
[[parameters]]
name = "password"
type = "secret"
min-length = 30
pattern = "^[a-z ]+$"
[[parameters]]
name = "token"
type = "secret"
generate = true
[[parameters]]
name = "n"
type = "integer"
default = 3
"#,
        );
        let r = m.resolve_params(&given(&[("password", "correct horse battery staple")])).unwrap_err();
        let text = r.to_string();
        assert!(!text.contains("correct horse"), "{text}");
        assert_eq!(text, "password: must be at least 30 characters long");
        let e = m.resolve_params(&given(&[("password", "Correct-Horse-Battery-Staple-0123")])).unwrap_err();
        assert_eq!(e.to_string(), "password: does not match the pattern `^[a-z ]+$`");

        let pw = "correct horse battery staple ok";
        let r = m.resolve_params(&given(&[("password", pw)])).unwrap();
        let token = r.get("token").unwrap().as_str().unwrap().to_owned();
        let debug = format!("{r:?}");
        let pretty = format!("{r:#?}");
        let display = r.to_string();
        for shown in [&debug, &pretty, &display] {
            assert!(!shown.contains(pw), "{shown}");
            assert!(!shown.contains(&token), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
            assert!(shown.contains("admin"), "{shown}");
        }
        assert_eq!(display, "user = \"admin\"\npassword = <redacted>\ntoken = <redacted> (generated)\nn = 3");
        assert_eq!(
            r.redacted(),
            vec![
                ("user".into(), "admin".into()),
                ("password".into(), REDACTED.into()),
                ("token".into(), REDACTED.into()),
                ("n".into(), "3".into())
            ]
        );
    }

    // ---- resolve_resources ----------------------------------------------

    #[test]
    fn resources_default_and_bounds() {
        let m = full();
        let r = m.resolve_resources(&ResourceOverrides::default()).unwrap();
        assert_eq!(r, ResolvedResources { cores: 1, memory_mb: 512, swap_mb: 512, disk_gb: 4 });

        let r = m
            .resolve_resources(&ResourceOverrides {
                cores: Some(4),
                memory_mb: Some(2048),
                swap_mb: Some(100_000),
                disk_gb: Some(2),
            })
            .unwrap();
        assert_eq!(r, ResolvedResources { cores: 4, memory_mb: 2048, swap_mb: 100_000, disk_gb: 2 });

        let e = m
            .resolve_resources(&ResourceOverrides {
                cores: Some(5),
                memory_mb: Some(64),
                swap_mb: None,
                disk_gb: Some(5),
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cores: 5 is above the maximum 4\nmemory-mb: 64 is below the minimum 128\ndisk-gb: 5 is above the maximum 4"
        );
        // memory has no `max`: the [grants.lxc] bound applies.
        let e = m.resolve_resources(&ResourceOverrides { memory_mb: Some(4096), ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "memory-mb: 4096 is above the maximum 2048");
        let b = m.resource_bounds();
        assert_eq!(b.cores.max, Some(4));
        assert_eq!(b.memory_mb.max, Some(2048));
        assert_eq!(b.swap_mb.max, None);
        assert_eq!(b.disk_gb.max, Some(4));

        // No lxc grant and no max: unbounded by the manifest.
        let m = with("[resources]\nswap-mb = { min = 0, default = 0, max = 1024 }").unwrap();
        let r = m
            .resolve_resources(&ResourceOverrides { cores: Some(64), memory_mb: Some(65536), ..Default::default() })
            .unwrap();
        assert_eq!((r.cores, r.memory_mb), (64, 65536));
        let e = m
            .resolve_resources(&ResourceOverrides { swap_mb: Some(2048), cores: Some(0), ..Default::default() })
            .unwrap_err();
        assert_eq!(e.to_string(), "cores: 0 is below the minimum 1\nswap-mb: 2048 is above the maximum 1024");
    }

    // ---- grants -----------------------------------------------------------

    #[test]
    fn capabilities_parse_and_print() {
        for c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Capability::Lxc.to_string(), "lxc");
        let e = "shell".parse::<Capability>().unwrap_err();
        assert_eq!(e.to_string(), "unknown capability `shell` (known: lxc, exec, files, proxy, probe, progress)");
        for f in LxcFeature::ALL {
            assert_eq!(f.as_str().parse::<LxcFeature>().unwrap(), f);
        }
        assert!("privileged".parse::<LxcFeature>().is_err());
    }

    #[test]
    fn require_and_allows() {
        let g = full().grants;
        for c in [
            Capability::Lxc,
            Capability::Exec,
            Capability::Files,
            Capability::Probe,
            Capability::Proxy,
            Capability::Progress,
        ] {
            assert!(g.allows(c));
            assert!(g.require(c).is_ok());
        }
        let g = Grants::default();
        assert!(g.allows(Capability::Progress));
        assert!(g.require(Capability::Progress).is_ok());
        for c in [Capability::Lxc, Capability::Exec, Capability::Files, Capability::Probe, Capability::Proxy] {
            assert!(!g.allows(c));
            let d = g.require(c).unwrap_err();
            assert_eq!(d.grant, format!("capabilities.{c}"));
            assert_eq!(
                d.to_string(),
                format!("capability `{c}` is not granted (add \"{c}\" to [grants] capabilities)")
            );
        }
        assert_eq!(
            g.require(Capability::Exec).unwrap_err().message,
            "capability `exec` is not granted (add \"exec\" to [grants] capabilities)"
        );
    }

    #[test]
    fn check_container_bounds_and_features() {
        let g = full().grants;
        let ok = ContainerRequest { cores: 4, memory_mb: 2048, disk_gb: 4, nesting: true, keyctl: true, fuse: false };
        assert!(g.check_container(&ok).is_ok());
        assert!(g
            .check_container(&ContainerRequest { cores: 1, memory_mb: 128, disk_gb: 1, ..Default::default() })
            .is_ok());

        let d = g.check_container(&ContainerRequest { cores: 64, ..ok }).unwrap_err();
        assert_eq!(d.grant, "lxc.max-cores");
        assert_eq!(d.to_string(), "create-lxc asks for 64 cores but [grants.lxc] max-cores is 4");
        let d = g.check_container(&ContainerRequest { memory_mb: 4096, ..ok }).unwrap_err();
        assert_eq!(d.grant, "lxc.max-memory-mb");
        assert_eq!(d.message, "create-lxc asks for 4096 MB of memory but [grants.lxc] max-memory-mb is 2048");
        let d = g.check_container(&ContainerRequest { disk_gb: 100, ..ok }).unwrap_err();
        assert_eq!(d.grant, "lxc.max-disk-gb");
        assert_eq!(d.message, "create-lxc asks for 100 GB of disk but [grants.lxc] max-disk-gb is 4");
        let d = g.check_container(&ContainerRequest { fuse: true, ..ok }).unwrap_err();
        assert_eq!(d.grant, "lxc.features.fuse");
        assert_eq!(d.message, "feature `fuse` is not in [grants.lxc] features");

        let d = g.check_container(&ContainerRequest { cores: 5, fuse: true, ..ok }).unwrap_err();
        assert_eq!(d.grant, "lxc.max-cores, lxc.features.fuse");
        assert_eq!(
            d.message,
            "create-lxc asks for 5 cores but [grants.lxc] max-cores is 4; feature `fuse` is not in [grants.lxc] features"
        );

        let m = with("[grants]\ncapabilities = [\"lxc\"]").unwrap();
        let d = m.grants.check_container(&ContainerRequest {
            cores: 1,
            memory_mb: 512,
            disk_gb: 4,
            keyctl: true,
            ..Default::default()
        });
        assert_eq!(d.unwrap_err().message, "feature `keyctl` is not in [grants.lxc] features");
        let d =
            m.grants.check_container(&ContainerRequest { cores: 2, memory_mb: 512, disk_gb: 4, ..Default::default() });
        assert_eq!(d.unwrap_err().message, "create-lxc asks for 2 cores but [grants.lxc] max-cores is 1");

        let d = Grants::default().check_container(&ContainerRequest::default()).unwrap_err();
        assert_eq!(d.grant, "capabilities.lxc");
        assert_eq!(d.message, "capability `lxc` is not granted (add \"lxc\" to [grants] capabilities)");

        let inconsistent = Grants { capabilities: [Capability::Lxc].into(), lxc: None, proxy: vec![] };
        let d = inconsistent.check_container(&ContainerRequest::default()).unwrap_err();
        assert_eq!(d.grant, "lxc");
    }

    #[test]
    fn check_proxy_matches_service_and_exact_command() {
        let g = full().grants;
        assert!(g.check_proxy("nextcloud-proxy", "php occ files:scan").is_ok());
        assert!(g.check_proxy("nextcloud-proxy", "php occ status").is_ok());
        for (service, command) in [
            ("nextcloud-proxy", "php occ files:scan --all"),
            ("nextcloud-proxy", "php occ  status"),
            ("nextcloud-proxy", "rm -rf /"),
            ("other-proxy", "php occ status"),
        ] {
            let d = g.check_proxy(service, command).unwrap_err();
            assert_eq!(d.grant, format!("proxy.{service}"));
            assert_eq!(d.message, format!("proxy service `{service}` command `{command}` is not in [[grants.proxy]]"));
        }
        let d = Grants::default().check_proxy("nextcloud-proxy", "php occ status").unwrap_err();
        assert_eq!(d.grant, "capabilities.proxy");
        assert!(d.message.starts_with("capability `proxy` is not granted"));
    }

    #[test]
    fn summary_in_plain_words() {
        assert_eq!(
            full().summary_lines(),
            vec![
                "creates containers (up to 4 cores, 2048 MB memory, 4 GB disk; features: nesting, keyctl)",
                "runs commands inside its containers",
                "writes and reads files in its containers",
                "calls proxy service `nextcloud-proxy`: commands `php occ files:scan`, `php occ status`",
                "waits for ports/URLs in its containers to answer",
            ]
        );
        let m = with("[grants]\ncapabilities = [\"lxc\", \"progress\"]").unwrap();
        assert_eq!(m.summary_lines(), vec!["creates containers (up to 1 core, 512 MB memory, 4 GB disk)"]);
    }

    #[test]
    fn grant_growth_names_each_new_permission_and_ignores_shrinking() {
        let grants = |text: &str| -> Grants { toml::from_str(text).unwrap() };
        let before = grants(
            "capabilities = [\"lxc\", \"exec\", \"proxy\"]\n\
             lxc = { max-cores = 2, max-memory-mb = 1024, max-disk-gb = 8, features = [\"nesting\"] }\n\
             proxy = [{ service = \"db\", commands = [\"dump\"] }]",
        );
        assert!(before.added_since(&before).is_empty());
        let smaller = grants(
            "capabilities = [\"lxc\"]\nlxc = { max-cores = 1, max-memory-mb = 512, max-disk-gb = 4, features = [] }",
        );
        assert!(smaller.added_since(&before).is_empty(), "{:?}", smaller.added_since(&before));
        let bigger = grants(
            "capabilities = [\"lxc\", \"exec\", \"files\", \"proxy\"]\n\
             lxc = { max-cores = 4, max-memory-mb = 1024, max-disk-gb = 8, features = [\"nesting\", \"fuse\"] }\n\
             proxy = [{ service = \"db\", commands = [\"dump\", \"restore\"] }]",
        );
        assert_eq!(
            bigger.added_since(&before),
            [
                "capability `files`",
                "lxc max-cores 2 -> 4",
                "lxc feature `fuse`",
                "proxy service `db` command `restore`",
            ]
        );
        let none = Grants::default();
        assert_eq!(
            before.added_since(&none),
            [
                "capability `lxc`",
                "capability `exec`",
                "capability `proxy`",
                "lxc max-cores 0 -> 2",
                "lxc max-memory-mb 0 -> 1024",
                "lxc max-disk-gb 0 -> 8",
                "lxc feature `nesting`",
                "proxy service `db` command `dump`",
            ],
            "a new lxc grant shows its bounds and features"
        );
    }
}
