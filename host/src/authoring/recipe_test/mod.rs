//! `proximity recipe test DIR`: run a recipe's test cases on the simulator.
//!
//! The cases live in `recipe.test.toml` beside `recipe.toml`. Each case runs
//! one export of the recipe on a fresh simulated cluster (the `sim` backend,
//! scripted by the recipe's `sim.toml` and the case), then compares what the
//! recipe did with what the case expects. Nothing touches a real host.
//!
//! ```toml
//! [[case]]
//! name = "installs with a custom greeting"   # unique; `--filter` matches on it
//! action = "install"           # install (default) | uninstall | upgrade | health;
//!                              # the others run on an app the case installs first
//! # from-version = "0.0.9"     # upgrade only (default: the recipe's own version)
//! params = { greeting = "Hi", port = 8080 }   # as an operator gives them
//! resources = { cores = 2 }    # cores, memory-mb, swap-mb, disk-gb
//! # app-id = "nginx-test"      # the default: <recipe id>-test
//! # sim-toml = false           # ignore the recipe's sim.toml (default: it applies)
//! # http-status = 503          # what HTTP probes get
//! # closed-ports = [80]        # ports that never answer
//! # fail-create = "no space"   # container creation fails with this message
//!
//! [[case.exec]]                # scripted answers, before sim.toml's; the first match wins
//! prefix = ["redis-cli"]       # argv starts with these (`*` = any one argument),
//!                              # or words = ["compose", "ps"] (in order, gaps allowed)
//! stdout = "PONG\n"            # also status, stderr, delay-ms
//!
//! [[case.files]]               # files every new container starts with
//! path = "/etc/app/version"
//! contents = "1.2.3\n"
//!
//! [case.expect]
//! commands = [                 # every argv run in the containers, in order
//!     ["apt-get", "update", "-q"],
//!     ["nginx", "-t"],
//! ]
//! commands-match = "exact"     # or "in-order": these in order, others allowed around them
//! steps = ["Creating container", "Installing nginx"]   # progress steps, exactly
//!
//! [[case.expect.files]]        # the last write of the path counts
//! path = "/var/www/html/index.html"
//! contains = ["<h1>Hi</h1>"]   # or one string; or contents = "…" (exact),
//!                              # or contents-file = "tests/index.html" (exact, from a file)
//! mode = 0o644                 # also owner, group
//!
//! [case.expect.result]         # the run succeeds; only the fields given are compared
//! url = "http://{{address}}/"  # install/upgrade: url, address, ports, outputs (all of them)
//! ports = [80]                 # health: healthy = true, checks = { http = true }
//!
//! # [case.expect.error]        # instead of result: the run fails
//! # kind = "backend"           # a recipe error kind, deadline, memory-limit, crashed,
//! #                            # instantiate, or invalid-params (rejected before the run)
//! # message = "apt-get"        # a substring of the message
//! ```
//!
//! Expected strings may name the run's values: `{{param.NAME}}` (a parameter
//! as the recipe got it, generated secrets included), `{{app-id}}`,
//! `{{deployment-id}}` and `{{address}}` (the first container's). Any other
//! `{{…}}` is compared as it is. In diffs, secret values show as their
//! `{{param.NAME}}` placeholder.
//!
//! An uninstall, upgrade or health case first installs the app on the base
//! script (`sim.toml` and the case's `files`); the case's `exec`,
//! `http-status`, `closed-ports` and `fail-create` apply to its action only,
//! and the expectations look at that action alone.
//!
//! [`run_tests`] returns a [`SuiteReport`]; [`render`] turns it into text.

mod format;
mod render;
mod report;
mod runner;
mod vars;

pub use format::{
    load as load_test_file, parse as parse_test_file, Case, CaseAction, CommandsMatch, Expect, TestFile, TEST_FILE,
};
pub use render::{header, line_diff, render, render_case, render_failure, summary, text_diff, RenderOptions};
pub use report::{BuildNote, CaseReport, Failure, SuiteReport};
pub use runner::{argv_line, failure_kind, is_stale, newest_source, run_tests, BuildPolicy, TestOptions};
