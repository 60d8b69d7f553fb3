//! A plan: the ordered record of every infrastructure operation a run made.
//!
//! The `sim` backend records one for every run; `--dry-run` prints it so an
//! operator sees the container spec, each command's argv and each file
//! written before anything touches a real host.

use serde::Serialize;
use std::fmt::Write as _;

use crate::backend::{ContainerSpec, HttpProbe};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum PlanStep {
    CreateLxc {
        id: String,
        node: String,
        spec: ContainerSpec,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    Destroy {
        id: String,
    },
    Exec {
        id: String,
        argv: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        env: Vec<(String, String)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        stdin_bytes: usize,
        timeout_ms: u64,
        status: i32,
    },
    WriteFile {
        id: String,
        path: String,
        mode: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        size: usize,
        sha256: String,
        /// The file's text, when it is UTF-8 and short enough to show.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    ReadFile {
        id: String,
        path: String,
        found: bool,
    },
    WaitTcp {
        id: String,
        port: u16,
    },
    WaitHttp {
        id: String,
        probe: HttpProbe,
        status: Option<u16>,
    },
    ProxyExec {
        service: String,
        command: String,
        args: Vec<String>,
        status: i32,
    },
}

/// Files larger than this are summarised by size and digest only.
pub const MAX_TEXT_SHOWN: usize = 8 * 1024;

impl PlanStep {
    /// Replace every occurrence of each secret in the step's strings.
    pub fn redact(&mut self, redact: &dyn Fn(&str) -> String) {
        let fix = |s: &mut String| *s = redact(s);
        match self {
            PlanStep::Exec { argv, env, cwd, .. } => {
                argv.iter_mut().for_each(fix);
                env.iter_mut().for_each(|(_, v)| fix(v));
                if let Some(cwd) = cwd {
                    fix(cwd);
                }
            }
            PlanStep::WriteFile { path, text, .. } => {
                fix(path);
                if let Some(text) = text {
                    fix(text);
                }
            }
            PlanStep::ProxyExec { args, .. } => args.iter_mut().for_each(fix),
            _ => {}
        }
    }
}

/// Human-readable rendering of a plan, one numbered line (or block) per step.
pub fn render(steps: &[PlanStep], show_file_text: bool) -> String {
    let mut out = String::new();
    for (n, step) in steps.iter().enumerate() {
        let n = n + 1;
        let _ = match step {
            PlanStep::CreateLxc { id, node, spec } => {
                let f = &spec.features;
                let features: Vec<&str> = [("nesting", f.nesting), ("keyctl", f.keyctl), ("fuse", f.fuse)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name)
                    .collect();
                writeln!(
                    out,
                    "{n:>3}. create-lxc {id} on {node}: hostname={} template={} cores={} memory={}MB swap={}MB disk={}GB \
                     unprivileged={} features=[{}] net={} tags=[{}]",
                    spec.hostname,
                    spec.os_template,
                    spec.cores,
                    spec.memory_mb,
                    spec.swap_mb,
                    spec.disk_gb,
                    spec.unprivileged,
                    features.join(","),
                    match &spec.network.ip {
                        crate::backend::IpConfig::Dhcp => "dhcp".to_string(),
                        crate::backend::IpConfig::Static { cidr, gateway } =>
                            format!("{cidr}{}", gateway.as_deref().map(|g| format!(" gw {g}")).unwrap_or_default()),
                    },
                    spec.tags.join(","),
                )
            }
            PlanStep::Start { id } => writeln!(out, "{n:>3}. start {id}"),
            PlanStep::Stop { id } => writeln!(out, "{n:>3}. stop {id}"),
            PlanStep::Destroy { id } => writeln!(out, "{n:>3}. destroy {id}"),
            PlanStep::Exec { id, argv, env, cwd, stdin_bytes, timeout_ms, status } => {
                let mut extra = String::new();
                if !env.is_empty() {
                    let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = write!(extra, " env=[{}]", pairs.join(" "));
                }
                if let Some(cwd) = cwd {
                    let _ = write!(extra, " cwd={cwd}");
                }
                if *stdin_bytes > 0 {
                    let _ = write!(extra, " stdin={stdin_bytes}B");
                }
                writeln!(out, "{n:>3}. exec {id}: {argv:?}{extra} (timeout {}s) -> exit {status}", timeout_ms / 1000)
            }
            PlanStep::WriteFile { id, path, mode, owner, group, size, sha256, text } => {
                let owner = match (owner, group) {
                    (None, None) => String::new(),
                    (o, g) => format!(" owner={}:{}", o.as_deref().unwrap_or("-"), g.as_deref().unwrap_or("-")),
                };
                let r = writeln!(
                    out,
                    "{n:>3}. write-file {id}: {path} mode={mode:o}{owner} {size} bytes sha256={}",
                    &sha256[..12]
                );
                if let (true, Some(text)) = (show_file_text, text) {
                    for line in text.lines() {
                        let _ = writeln!(out, "       | {line}");
                    }
                }
                r
            }
            PlanStep::ReadFile { id, path, found } => {
                writeln!(out, "{n:>3}. read-file {id}: {path}{}", if *found { "" } else { " (not found)" })
            }
            PlanStep::WaitTcp { id, port } => writeln!(out, "{n:>3}. wait-tcp {id}:{port}"),
            PlanStep::WaitHttp { id, probe, status } => writeln!(
                out,
                "{n:>3}. wait-http {id}:{}{} -> {}",
                probe.port,
                probe.path,
                status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into())
            ),
            PlanStep::ProxyExec { service, command, args, status } => {
                writeln!(out, "{n:>3}. proxy-exec {service}: {command} {args:?} -> exit {status}")
            }
        };
    }
    out
}
