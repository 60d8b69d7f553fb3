//! `proximity apps`: the apps a `proximity serve` server runs.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::client::{AppAction, Client};
use super::remote;
use crate::api;

/// Where the server is and how to talk to it.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// URL of the `proximity serve` server.
    #[arg(long, env = "PROXIMITY_SERVER", default_value = "http://127.0.0.1:8089", global = true)]
    pub server: String,
    /// API token (create one with `proximity token create --name NAME`).
    #[arg(long, env = "PROXIMITY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON on stdout instead of text (progress still goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

impl ServerArgs {
    pub fn client(&self) -> Result<Client> {
        Client::new(&self.server, self.token.clone())
    }
}

#[derive(Subcommand, Clone, Debug)]
pub enum AppsCommand {
    /// List the installed apps.
    #[command(alias = "list")]
    Ls,
    /// Show one app: version, state, where to reach it, parameters, containers.
    Show {
        /// App id.
        id: String,
    },
    /// Start an app's containers.
    Start {
        /// App id.
        id: String,
    },
    /// Stop an app's containers.
    Stop {
        /// App id.
        id: String,
    },
    /// Restart an app's containers.
    Restart {
        /// App id.
        id: String,
    },
    /// Show an app's health and recent log lines.
    Logs {
        /// App id.
        id: String,
    },
    /// Uninstall an app: run its recipe's uninstall, destroy its containers.
    #[command(alias = "remove")]
    Rm {
        /// App id.
        id: String,
        /// Print the job id and return at once instead of following the job.
        #[arg(long)]
        no_wait: bool,
    },
    /// Upgrade an app to another version of its recipe.
    Upgrade {
        /// App id.
        id: String,
        /// The version to move to [default: the catalog's current one].
        #[arg(long)]
        version: Option<String>,
    },
    /// Print an app's secret parameters (generated passwords, ...) in clear.
    Secrets {
        /// App id.
        id: String,
    },
}

pub async fn run(command: AppsCommand, server: &ServerArgs) -> Result<ExitCode> {
    let client = server.client()?;
    let json = server.json;
    match command {
        AppsCommand::Ls => {
            let list = client.apps().await?;
            if json {
                print_json(&list)?;
            } else if list.apps.is_empty() {
                eprintln!("no apps installed on {}", client.base());
            } else {
                print!("{}", table(&list.apps));
            }
        }
        AppsCommand::Show { id } => {
            let app = client.app(&id).await?;
            if json {
                print_json(&app)?;
            } else {
                print!("{}", describe(&app));
            }
        }
        AppsCommand::Start { id } => return action(&client, &id, AppAction::Start, json).await,
        AppsCommand::Stop { id } => return action(&client, &id, AppAction::Stop, json).await,
        AppsCommand::Restart { id } => return action(&client, &id, AppAction::Restart, json).await,
        AppsCommand::Logs { id } => {
            let logs = client.logs(&id).await?;
            if json {
                print_json(&logs)?;
            } else {
                if let Some(health) = &logs.health {
                    for line in health_lines(health) {
                        println!("{line}");
                    }
                }
                if logs.lines.is_empty() {
                    eprintln!("no log lines for `{id}`");
                }
                for line in &logs.lines {
                    println!("{line}");
                }
            }
        }
        AppsCommand::Rm { id, no_wait } => {
            let accepted = client.remove(&id).await?;
            eprintln!("removing {} (job {})", accepted.app_id, accepted.id);
            return started(&client, &accepted, no_wait, json).await;
        }
        AppsCommand::Upgrade { id, version } => {
            let accepted = client.upgrade(&id, &api::UpgradeRequest { version: version.clone() }).await?;
            let to = version.map(|v| format!("version {v}")).unwrap_or_else(|| "the catalog's version".to_string());
            eprintln!("upgrading {} to {to} (job {})", accepted.app_id, accepted.id);
            return started(&client, &accepted, false, json).await;
        }
        AppsCommand::Secrets { id } => {
            let secrets = client.secrets(&id).await?;
            eprintln!(
                "warning: these are `{id}`'s secrets in clear; keep them out of shared terminals, logs and tickets"
            );
            if json {
                print_json(&secrets)?;
            } else if secrets.secrets.is_empty() {
                eprintln!("`{id}` has no secret parameters");
            } else {
                for (name, value) in &secrets.secrets {
                    println!("{name}={value}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn action(client: &Client, id: &str, action: AppAction, json: bool) -> Result<ExitCode> {
    let app = client.app_action(id, action).await?;
    if json {
        print_json(&app)?;
    } else {
        let done = match action {
            AppAction::Start => "started",
            AppAction::Stop => "stopped",
            AppAction::Restart => "restarted",
        };
        println!("✓ {done} `{}` (now {})", app.id, app.state.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// A job was accepted: follow it, or with `no_wait` just say which it is.
async fn started(client: &Client, accepted: &api::JobAccepted, no_wait: bool, json: bool) -> Result<ExitCode> {
    if !no_wait {
        return remote::follow(client, &accepted.id, json).await;
    }
    if json {
        print_json(accepted)?;
    } else {
        println!("{}", accepted.id);
        // `url` is a path on the server (or, from some servers, already absolute).
        let url = if accepted.url.contains("://") {
            accepted.url.clone()
        } else {
            format!("{}{}", client.base(), accepted.url)
        };
        eprintln!("job {} runs on the server; its state: {url}", accepted.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `ID RECIPE VERSION STATE URL`, aligned.
fn table(apps: &[api::App]) -> String {
    let header = ["ID", "RECIPE", "VERSION", "STATE", "URL"];
    let rows: Vec<[String; 5]> = apps
        .iter()
        .map(|app| {
            [
                app.id.clone(),
                app.recipe.clone(),
                app.version.clone(),
                app.state.as_str().to_string(),
                app.url.clone().or_else(|| app.address.clone()).unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `api::App` for a person to read.
fn describe(app: &api::App) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: &str| out.push_str(&format!("{:<12}{value}\n", format!("{name}:")));
    field("id", &app.id);
    field("recipe", &format!("{} {}", app.recipe, app.version));
    field("digest", &app.digest);
    field("state", app.state.as_str());
    if let Some(url) = &app.url {
        field("url", url);
    }
    if let Some(address) = &app.address {
        field("address", address);
    }
    if !app.ports.is_empty() {
        field("ports", &app.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "));
    }
    if let Some(node) = &app.node {
        field("node", node);
    }
    if !app.containers.is_empty() {
        field("containers", &app.containers.join(", "));
    }
    field("deployment", &app.deployment_id);
    field("created", &app.created_at);
    field("updated", &app.updated_at);
    if !app.secrets.is_empty() {
        field("secrets", &format!("{} (print with `proximity apps secrets {}`)", app.secrets.join(", "), app.id));
    }
    let mut section = |title: &str, entries: &std::collections::BTreeMap<String, String>, sep: &str| {
        if !entries.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for (name, value) in entries {
                out.push_str(&format!("  {name}{sep}{value}\n"));
            }
        }
    };
    section("outputs", &app.outputs, ": ");
    section("params", &app.params, " = ");
    out
}

/// The recipe's health report (`{healthy, checks: [{name, ok, detail}]}`) as lines.
fn health_lines(health: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    match health.get("healthy").and_then(serde_json::Value::as_bool) {
        Some(true) => lines.push("health: healthy".to_string()),
        Some(false) => lines.push("health: UNHEALTHY".to_string()),
        None => {
            lines.push(format!("health: {health}"));
            return lines;
        }
    }
    for check in health.get("checks").and_then(serde_json::Value::as_array).into_iter().flatten() {
        let name = check.get("name").and_then(serde_json::Value::as_str).unwrap_or("?");
        let ok = check.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let detail = check.get("detail").and_then(serde_json::Value::as_str).unwrap_or("");
        let mark = if ok { "✓" } else { "✗" };
        lines.push(if detail.is_empty() { format!("  {mark} {name}") } else { format!("  {mark} {name}: {detail}") });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn app(id: &str, url: Option<&str>) -> api::App {
        api::App {
            id: id.into(),
            recipe: "wordpress".into(),
            version: "6.5.0".into(),
            digest: "sha256:abc".into(),
            state: api::AppState::Running,
            url: url.map(str::to_string),
            address: Some("10.0.3.12".into()),
            ports: vec![80],
            outputs: [("admin".to_string(), "admin@example.com".to_string())].into(),
            containers: vec!["ct-1".into()],
            params: [("db_password".to_string(), "«secret:db_password»".to_string())].into(),
            secrets: vec!["db_password".into()],
            node: Some("pve1".into()),
            deployment_id: "job-1".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-02T00:00:00Z".into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let apps = [app("wordpress-x1", Some("http://10.0.3.12/")), app("wp", None)];
        assert_eq!(
            table(&apps),
            "ID            RECIPE     VERSION  STATE    URL\n\
             wordpress-x1  wordpress  6.5.0    running  http://10.0.3.12/\n\
             wp            wordpress  6.5.0    running  10.0.3.12\n"
        );
    }

    #[test]
    fn describe_shows_every_useful_field() {
        let text = describe(&app("wp", Some("http://10.0.3.12/")));
        for expected in [
            "id:         wp\n",
            "recipe:     wordpress 6.5.0\n",
            "state:      running\n",
            "url:        http://10.0.3.12/\n",
            "containers: ct-1\n",
            "secrets:    db_password (print with `proximity apps secrets wp`)\n",
            "outputs:\n  admin: admin@example.com\n",
            "params:\n  db_password = «secret:db_password»\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn health_lines_read_a_report() {
        let report = serde_json::json!({"healthy": false, "checks": [
            {"name": "http", "ok": true, "detail": ""},
            {"name": "db", "ok": false, "detail": "connection refused"}
        ]});
        assert_eq!(health_lines(&report), vec!["health: UNHEALTHY", "  ✓ http", "  ✗ db: connection refused"]);
    }

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: AppsCommand,
    }

    #[test]
    fn commands_parse() {
        let cli = TestCli::try_parse_from(["proximity", "--server", "http://h:1", "list"]).unwrap();
        assert!(matches!(cli.command, AppsCommand::Ls));
        assert_eq!(cli.server.server, "http://h:1");
        let cli = TestCli::try_parse_from(["proximity", "rm", "wp", "--no-wait"]).unwrap();
        assert!(matches!(cli.command, AppsCommand::Rm { ref id, no_wait: true } if id == "wp"));
        let cli = TestCli::try_parse_from(["proximity", "upgrade", "wp", "--version", "6.6.0"]).unwrap();
        assert!(matches!(cli.command, AppsCommand::Upgrade { version: Some(ref v), .. } if v == "6.6.0"));
        TestCli::command_for_test().debug_assert();
    }

    impl TestCli {
        fn command_for_test() -> clap::Command {
            <Self as clap::CommandFactory>::command()
        }
    }
}
