//! `proximity-proxy forced-command` as sshd would start it: the client's
//! line in `SSH_ORIGINAL_COMMAND`, the output and exit status passed back,
//! and an audit line in the configured file.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::{config_text, Workspace};

/// A workspace whose config also appends audit lines to `audit.log`.
fn workspace() -> (Workspace, PathBuf) {
    let workspace = Workspace::new();
    let audit = workspace.path().join("audit.log");
    let text = format!("audit_log = \"{}\"\n{}", audit.display(), config_text(workspace.path(), "127.0.0.1:0"));
    std::fs::write(workspace.path().join("proxy.toml"), text).unwrap();
    (workspace, audit)
}

/// Runs the binary for `service` with `command` as `SSH_ORIGINAL_COMMAND`
/// (unset for `None`) and `extra` variables.
fn forced(workspace: &Workspace, service: &str, command: Option<&str>, extra: &[(&str, &str)]) -> Output {
    let mut run = Command::new(env!("CARGO_BIN_EXE_proximity-proxy"));
    run.args(["forced-command", "--config"]).arg(workspace.path().join("proxy.toml")).args(["--service", service]);
    for name in ["SSH_ORIGINAL_COMMAND", "SSH_CONNECTION", "SSH_USER_AUTH", "RUST_LOG"] {
        run.env_remove(name);
    }
    if let Some(command) = command {
        run.env("SSH_ORIGINAL_COMMAND", command);
    }
    run.envs(extra.iter().copied());
    run.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn assert_refused(out: &Output, what: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
    assert!(stderr.starts_with("proximity-proxy: refused: "), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
}

#[test]
fn allowed_commands_run_and_pass_output_and_status_through() {
    let (workspace, _) = workspace();
    let out = forced(&workspace, "app", Some("app run --all"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran 3\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    let out = forced(&workspace, "app", Some("app run fail"), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "failing\n");

    // Quotes group words; the metacharacters inside are inert bytes.
    let pwned = workspace.path().join("pwned");
    let line = format!("app echo 'a; touch {0}' $(touch {0}) `touch {0}`", pwned.display());
    let out = forced(&workspace, "app", Some(&line), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!pwned.exists());

    let p = pwned.display().to_string();
    assert_eq!(
        workspace.calls(),
        [
            vec![
                "app".to_string(),
                "echo".into(),
                format!("a; touch {p}"),
                "$(touch".into(),
                format!("{p})"),
                "`touch".into(),
                format!("{p}`")
            ],
            argv(&["app", "run", "--all"]),
            argv(&["app", "run", "fail"]),
        ]
    );
}

#[test]
fn injection_lines_are_refused_before_anything_runs() {
    let (workspace, _) = workspace();
    let long = format!("app run {}", "a".repeat(10_000));
    let corpus = [
        "app run --all; rm -rf /",
        "app run --all && rm -rf /",
        "app run --all | sh",
        "app run $(rm -rf /)",
        "app run `rm -rf /`",
        "app run --all\nrm -rf /",
        "app run ../../etc/passwd",
        "app run --path=/data/../../etc",
        "app run 'alice; rm -rf /'",
        "app run \"unterminated",
        "app run > /etc/passwd",
        "app run --force",
        "rm -rf /",
        "sh -c 'app run'",
        "",
        &long,
    ];
    for line in corpus {
        let out = forced(&workspace, "app", Some(line), &[]);
        assert_refused(&out, &line[..line.len().min(60)]);
    }
    assert!(workspace.calls().is_empty(), "{:?}", workspace.calls());
}

#[test]
fn a_login_without_a_command_is_refused() {
    let (workspace, _) = workspace();
    let out = forced(&workspace, "app", None, &[]);
    assert_refused(&out, "no SSH_ORIGINAL_COMMAND");
    assert!(text(&out.stderr).contains("no command given"), "{}", text(&out.stderr));
}

#[test]
fn timeout_and_output_limit_give_their_statuses() {
    let (workspace, _) = workspace();
    let out = forced(&workspace, "tight", Some("app run slow"), &[]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).ends_with("proximity-proxy: killed after the timeout of 1 s\n"), "{}", text(&out.stderr));

    let out = forced(&workspace, "tight", Some("app run chatty"), &[]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 1000);
}

#[test]
fn every_request_is_audited_with_peer_and_key() {
    let (workspace, audit) = workspace();
    let auth = workspace.path().join("user_auth");
    let public = workspace.key.public_key().to_openssh().unwrap();
    std::fs::write(&auth, format!("publickey {public}\n")).unwrap();
    let connection = ("SSH_CONNECTION", "192.0.2.7 51234 10.0.0.1 22");

    forced(&workspace, "app", Some("app run --all"), &[connection, ("SSH_USER_AUTH", auth.to_str().unwrap())]);
    forced(&workspace, "app", Some("app run --all; rm -rf /"), &[connection]);

    let log = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let fingerprint = format!("fingerprint={}", workspace.fingerprint());
    for field in ["proximity_proxy::audit", &fingerprint, "service=app", "peer=192.0.2.7:51234", "exit=0"] {
        assert!(lines[0].contains(field), "{field} missing in {}", lines[0]);
    }
    assert!(lines[0].contains(r#"argv=["app", "run", "--all"]"#), "{}", lines[0]);
    for field in ["fingerprint=openssh", "exit=126", "reason=", r#"argv=["app run --all; rm -rf /"]"#] {
        assert!(lines[1].contains(field), "{field} missing in {}", lines[1]);
    }
}

#[test]
fn setup_failures_are_reported_on_one_line() {
    let (workspace, _) = workspace();
    let out = forced(&workspace, "nextcloud", Some("app run --all"), &[]);
    assert_eq!(out.status.code(), Some(125));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no service \"nextcloud\""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_proximity-proxy"))
        .args(["forced-command", "--service", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("usage"), "{}", text(&out.stderr));
    assert!(workspace.calls().is_empty());
}
