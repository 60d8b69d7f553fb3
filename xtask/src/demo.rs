//! `cargo xtask demo`: the main job. Installs the repository's recipes as
//! bundles signed with the development key, starts `proximity serve` on
//! loopback with the embedded default backend (LXC; the simulator where LXC
//! cannot run), deploys nginx through its API as a client would, lists the app,
//! shows WordPress as a dry-run plan, then stops the server (or keeps it
//! serving with `--keep`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{build_recipes, bundles, cargo, packages};

/// Stops the server when the demo ends, however it ends.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGTERM: the server finishes its jobs' grace period and exits.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

pub fn run(root: &Path, keep: bool) -> Result<()> {
    build_recipes::run(root)?;
    let backend = match lxc_ready() {
        Ok(()) => "lxc",
        Err(why) => {
            println!("xtask: LXC is not usable here ({why:#}); the demo server uses the simulator instead");
            "sim"
        }
    };
    cargo::run(root, &["build", "-p", "proximity"], &[])?;
    let binary = root.join("target/debug/proximity");
    let data = root.join("target/demo");
    let proximity = |args: &[&str]| {
        let mut command = Command::new(&binary);
        command.current_dir(root).args(args);
        command
    };

    let out = proximity(&["token", "create", "--name", &format!("demo-{}", std::process::id()), "--data-dir"])
        .arg(&data)
        .stderr(Stdio::inherit())
        .output()
        .context("running proximity token create")?;
    if !out.status.success() {
        bail!("could not create an API token");
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // The catalog is what is installed: the repository's recipes, as bundles
    // signed with the development key, which this data directory trusts. It
    // is installed afresh each run, so edited recipes need no new version.
    let bundles = bundles::run(root, &binary)?;
    for installed in ["recipes", "bundles"] {
        let dir = data.join(installed);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let trusted = data.join("trusted-keys");
    std::fs::create_dir_all(&trusted)?;
    std::fs::copy(bundles::dev_public_key(root), trusted.join(format!("{}.pub", bundles::DEV_KEY_NAME)))?;
    for bundle in &bundles {
        let status = proximity(&["recipe", "install"]).arg(bundle).arg("--data-dir").arg(&data).status()?;
        if !status.success() {
            bail!("could not install {}", bundle.display());
        }
    }

    let mut child = proximity(&["serve", "--listen", "127.0.0.1:0", "--backend", backend])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting proximity serve")?;
    let stdout = child.stdout.take().expect("piped");
    let server = ServerProcess(child);
    let url = server_url(stdout)?;
    println!("xtask: the server runs at {url} (data in {})", data.display());

    let client = |args: &[&str]| -> Result<()> {
        let status = proximity(args).args(["--server", &url, "--token", &token]).status()?;
        if !status.success() {
            bail!("`proximity {}` failed", args.join(" "));
        }
        Ok(())
    };
    client(&["deploy", "nginx", "--param", "greeting=Deployed through the Proximity API"])?;
    client(&["apps", "ls"])?;
    client(&["deploy", "wordpress", "--dry-run"])?;

    if keep {
        println!("xtask: serving until Ctrl-C; API at {url}/api/v1, token {token}");
        println!("xtask: the web page is at {url}/ (enter the token under Settings)");
        wait_forever();
    }
    println!(
        "xtask: stopping the demo server; to keep one running: cargo run -p proximity -- serve --data-dir {} \
         (or `cargo xtask demo --keep`)",
        data.display()
    );
    drop(server);
    Ok(())
}

/// The address the server prints when it is ready.
/// The lxc backend runs as root with LXC installed (installed here when missing).
fn lxc_ready() -> Result<()> {
    if !packages::is_root() {
        bail!("the lxc backend needs root");
    }
    packages::ensure(packages::LXC, "the lxc backend")
}

fn server_url(stdout: std::process::ChildStdout) -> Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let Some(line) = lines.next() else { bail!("proximity serve exited before it was ready (see above)") };
        let line = line?;
        println!("{line}");
        if let Some((_, rest)) = line.split_once("on http://") {
            break format!("http://{}", rest.split('/').next().unwrap_or_default());
        }
    };
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    Ok(url)
}

fn wait_forever() {
    loop {
        std::thread::park();
    }
}
