//! The proxy on 127.0.0.1 against a russh client: what runs, what is
//! refused, and proof from the recording runner of the exact argv it got.

mod support;

use proximity_proxy::audit::Outcome;
use russh::keys::{Algorithm, PrivateKey};
use russh::ChannelMsg;
use support::{eventually, exec, TestServer};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test]
async fn allowed_commands_run_with_their_exact_argv() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;

    let out = exec(&client, b"app run --all").await;
    assert!(out.accepted);
    assert_eq!(out.status, Some(0), "{}", out.stderr());
    assert_eq!(out.stdout(), "ran 3\n");

    let out = exec(&client, b"app run --path /data/alice alice").await;
    assert_eq!(out.status, Some(0), "{}", out.stderr());

    let out = exec(&client, b"app run fail").await;
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stderr(), "failing\n");

    assert_eq!(
        server.workspace.calls(),
        [
            argv(&["app", "run", "--all"]),
            argv(&["app", "run", "--path", "/data/alice", "alice"]),
            argv(&["app", "run", "fail"]),
        ]
    );
}

/// A pooled client runs command after command on one connection: finished
/// commands' channels must not count against the per-connection cap.
#[tokio::test]
async fn one_connection_runs_many_commands_one_after_another() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;
    for i in 0..100 {
        let out = exec(&client, b"app run --all").await;
        assert!(out.accepted, "command {i} on the connection was refused a channel");
        assert_eq!(out.status, Some(0), "command {i}: {}", out.stderr());
    }
    assert_eq!(server.workspace.calls().len(), 100);
}

/// Lines that must be refused: exit 126, a one-line reason, and the runner
/// never started.
#[tokio::test]
async fn injection_corpus_is_refused_before_anything_runs() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;
    let long = format!("app run {}", "a".repeat(100_000));
    let corpus: Vec<&[u8]> = vec![
        b"app run --all; rm -rf /",
        b"app run --all && rm -rf /",
        b"app run --all | sh",
        b"app run $(rm -rf /)",
        b"app run `rm -rf /`",
        b"app run --all\nrm -rf /",
        b"app run --all\0rm -rf /",
        b"app run ../../etc/passwd",
        b"app run --path=/data/../../etc",
        b"app run 'alice; rm -rf /'",
        b"app run \"unterminated",
        b"app run > /etc/passwd",
        b"app run --force",
        b"app run a b c d",
        b"app echo --all",
        b"rm -rf /",
        b"sh -c 'app run'",
        b"",
        long.as_bytes(),
    ];
    for line in &corpus {
        let out = exec(&client, line).await;
        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        assert!(out.accepted, "{shown:?}");
        assert_eq!(out.status, Some(126), "{shown:?}: {}", out.stderr());
        assert!(out.stdout.is_empty(), "{shown:?}");
        let stderr = out.stderr();
        assert!(stderr.starts_with("proximity-proxy: refused: "), "{shown:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{shown:?}: {stderr}");
        assert!(stderr.len() < 200, "{shown:?}: {stderr}");
    }
    assert_eq!(server.workspace.calls(), Vec::<Vec<String>>::new());
    let records = server.audit.records();
    assert_eq!(records.len(), corpus.len());
    assert!(records.iter().all(|r| matches!(r.outcome, Outcome::Refused(_))));
}

/// Where a rule allows any argument, metacharacters arrive as inert bytes in
/// single arguments: nothing they would do in a shell happens.
#[tokio::test]
async fn metacharacters_allowed_by_a_rule_are_inert_arguments() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;
    let pwned = server.workspace.path().join("pwned");
    let p = pwned.display().to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("app echo 'x; touch {p}'"), argv(&["app", "echo", &format!("x; touch {p}")])),
        (format!("app echo x && touch {p}"), argv(&["app", "echo", "x", "&&", "touch", &p])),
        (format!("app echo x';'touch {p}"), argv(&["app", "echo", "x;touch", &p])),
        (format!("app echo \"$(touch {p})\""), argv(&["app", "echo", &format!("$(touch {p})")])),
        (format!("app echo '`touch {p}`'"), argv(&["app", "echo", &format!("`touch {p}`")])),
        (format!("app echo x | touch {p}"), argv(&["app", "echo", "x", "|", "touch", &p])),
        ("app echo \"it's\" 'say \"hi\"' a\\ b".into(), argv(&["app", "echo", "it's", "say \"hi\"", "a b"])),
        ("app echo '*' ~ '$HOME' ${IFS}".into(), argv(&["app", "echo", "*", "~", "$HOME", "${IFS}"])),
    ];
    for (line, _) in &cases {
        let out = exec(&client, line.as_bytes()).await;
        assert_eq!(out.status, Some(0), "{line:?}: {}", out.stderr());
    }
    let mut expected: Vec<Vec<String>> = cases.into_iter().map(|(_, argv)| argv).collect();
    expected.sort();
    assert_eq!(server.workspace.calls(), expected);
    assert!(!pwned.exists(), "a shell ran part of a command line");
}

#[tokio::test]
async fn unknown_keys_are_refused() {
    let server = TestServer::start().await;
    let stranger = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    assert!(server.connect_with("app", &stranger).await.is_none());
    // The right key still works.
    assert!(server.connect_with("anyone", &server.workspace.key).await.is_none(), "key in two services needs a user");
    assert!(server.connect_with("tight", &server.workspace.key).await.is_some());
}

/// The answer to a request: `Some(true)` for success, `Some(false)` for failure.
async fn reply(channel: &mut russh::Channel<russh::client::Msg>) -> Option<bool> {
    loop {
        match channel.wait().await? {
            ChannelMsg::Success => return Some(true),
            ChannelMsg::Failure => return Some(false),
            _ => {}
        }
    }
}

#[tokio::test]
async fn only_exec_is_answered() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;

    let mut channel = client.channel_open_session().await.unwrap();
    channel.request_shell(true).await.unwrap();
    assert_eq!(reply(&mut channel).await, Some(false), "shell");
    channel.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    assert_eq!(reply(&mut channel).await, Some(false), "pty");
    channel.request_subsystem(true, "sftp").await.unwrap();
    assert_eq!(reply(&mut channel).await, Some(false), "sftp");
    channel.set_env(true, "LD_PRELOAD", "/tmp/x.so").await.unwrap();
    assert_eq!(reply(&mut channel).await, Some(false), "env");

    // The same channel still runs one command, and only one.
    channel.exec(true, &b"app run --all"[..]).await.unwrap();
    assert_eq!(reply(&mut channel).await, Some(true));
    channel.exec(true, &b"app run --quiet"[..]).await.unwrap();
    let mut second_refused = false;
    while let Some(message) = channel.wait().await {
        second_refused |= matches!(message, ChannelMsg::Failure);
        if matches!(message, ChannelMsg::Close) {
            break;
        }
    }
    assert!(second_refused);

    assert!(client.channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 5555).await.is_err());
    assert_eq!(server.workspace.calls(), [argv(&["app", "run", "--all"])]);
}

#[tokio::test]
async fn timeout_and_output_limit_kill_the_command() {
    let server = TestServer::start().await;
    let client = server.connect("tight").await;

    let out = exec(&client, b"app run slow").await;
    assert_eq!(out.status, Some(124));
    assert!(out.stderr().contains("proximity-proxy: killed after the timeout of 1 s"), "{}", out.stderr());

    let out = exec(&client, b"app run chatty").await;
    assert_eq!(out.status, Some(125));
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stderr().contains("killed after 1000 bytes of output"), "{}", out.stderr());

    let outcomes: Vec<Outcome> = server.audit.records().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::TimedOut, Outcome::OutputLimit]);
}

#[tokio::test]
async fn concurrent_commands_per_key_are_capped_and_freed() {
    let server = TestServer::start().await;
    let client = server.connect("tight").await;
    let started = server.workspace.path().join("started");

    // A command that keeps running until its channel is closed.
    let slow = client.channel_open_session().await.unwrap();
    slow.exec(true, &b"app run slow"[..]).await.unwrap();
    assert!(eventually(|| started.exists()).await, "the slow command never started");

    let out = exec(&client, b"app run second").await;
    assert_eq!(out.status, Some(126));
    assert!(out.stderr().contains("too many commands running for this key (at most 1)"), "{}", out.stderr());

    // Closing the channel stops the command and frees the place.
    slow.close().await.unwrap();
    let fingerprint = server.workspace.fingerprint();
    assert!(eventually(|| server.proxy.running("tight", &fingerprint) == 0).await);
    let out = exec(&client, b"app run third").await;
    assert_eq!(out.status, Some(0), "{}", out.stderr());
    assert!(server.audit.records().iter().any(|r| r.outcome == Outcome::Abandoned));
}

#[tokio::test]
async fn a_dropped_connection_stops_its_commands() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;
    let started = server.workspace.path().join("started");
    let slow = client.channel_open_session().await.unwrap();
    slow.exec(true, &b"app run slow"[..]).await.unwrap();
    assert!(eventually(|| started.exists()).await, "the slow command never started");
    let fingerprint = server.workspace.fingerprint();
    assert_eq!(server.proxy.running("app", &fingerprint), 1);

    client.disconnect(russh::Disconnect::ByApplication, "bye", "").await.unwrap();
    drop(slow);
    drop(client);
    assert!(eventually(|| server.proxy.running("app", &fingerprint) == 0).await, "the command outlived its connection");
    assert!(eventually(|| server.audit.records().len() == 1).await);
    assert_eq!(server.audit.records()[0].outcome, Outcome::Abandoned);
}

#[tokio::test]
async fn rate_limit_refuses_past_the_burst() {
    let server = TestServer::start().await;
    let client = server.connect("tight").await;
    // burst = 3, one more per minute.
    for _ in 0..3 {
        assert_eq!(exec(&client, b"app run quick").await.status, Some(0));
    }
    let out = exec(&client, b"app run quick").await;
    assert_eq!(out.status, Some(126));
    assert!(out.stderr().contains("rate limit exceeded"), "{}", out.stderr());
    assert_eq!(server.workspace.calls().len(), 3);
}

/// The same key in two services has separate allowances in each.
#[tokio::test]
async fn limits_are_kept_per_service() {
    let server = TestServer::start().await;
    let app = server.connect("app").await;
    let started = server.workspace.path().join("started");
    let slow = app.channel_open_session().await.unwrap();
    slow.exec(true, &b"app run slow"[..]).await.unwrap();
    assert!(eventually(|| started.exists()).await, "the slow command never started");

    // `tight` allows one running command per key; the one running in `app`
    // does not count there.
    let tight = server.connect("tight").await;
    let out = exec(&tight, b"app run quick").await;
    assert_eq!(out.status, Some(0), "{}", out.stderr());
    let fingerprint = server.workspace.fingerprint();
    assert_eq!(server.proxy.running("app", &fingerprint), 1);
    slow.close().await.unwrap();
}

#[tokio::test]
async fn every_request_is_audited() {
    let server = TestServer::start().await;
    let client = server.connect("app").await;
    exec(&client, b"app run --all").await;
    exec(&client, b"app run; id").await;
    let records = server.audit.records();
    assert_eq!(records.len(), 2);
    let fingerprint = server.workspace.fingerprint();
    assert!(fingerprint.starts_with("SHA256:"));
    assert!(records
        .iter()
        .all(|r| r.fingerprint == fingerprint && r.service == "app" && r.peer.starts_with("127.0.0.1:")));
    assert_eq!(records[0].argv, argv(&["app", "run", "--all"]));
    assert_eq!(records[0].outcome, Outcome::Exited(0));
    assert_eq!(records[1].argv, argv(&["app run; id"]));
    assert_eq!(records[1].outcome, Outcome::Refused("command not allowed".into()));
}

/// The default runner end to end, with a stand-in `docker` that records
/// what it was asked to run.
#[tokio::test]
async fn docker_runner_execs_into_the_container_as_the_configured_user() {
    let server = TestServer::start_with(|dir| {
        let keys = dir.join("authorized_keys");
        format!(
            r#"
listen = "127.0.0.1:0"
host_key = "{host_key}"

[services.nextcloud]
authorized_keys = "{keys}"
runner = {{ kind = "docker", container = "nextcloud-app", user = "www-data", docker = "{docker}" }}

[[services.nextcloud.commands]]
prefix = "php occ files:scan"
max_args = 2
flags = ["--all"]
positional = "[a-z]+"
"#,
            host_key = dir.join("host_key").display(),
            keys = keys.display(),
            docker = dir.join("record.sh").display(),
        )
    })
    .await;
    let client = server.connect("nextcloud").await;
    let out = exec(&client, b"php occ files:scan --all").await;
    assert_eq!(out.status, Some(0), "{}", out.stderr());
    let out = exec(&client, b"php occ files:scan --all; docker rm -f nextcloud-app").await;
    assert_eq!(out.status, Some(126));
    assert_eq!(
        server.workspace.calls(),
        [argv(&["exec", "--user", "www-data", "nextcloud-app", "php", "occ", "files:scan", "--all"])]
    );
}
