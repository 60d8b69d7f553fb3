//! PostgreSQL 15 on Debian 12: the distribution's package, one database owned
//! by one role whose password the host generates, reachable on the
//! container's address with scram-sha-256.
//!
//! Install: container, `postgresql`, the recipe's settings in `conf.d/` and a
//! new `pg_hba.conf`, restart, then the role and the database (created when
//! missing, the password set every time), and a real query as that role.
//! Upgrade: Debian's newest PostgreSQL 15 packages, the same settings written
//! again, restart, the same checks. Uninstall: a clean shutdown (the host
//! destroys the container afterwards). Health: the service, the port from
//! the host, and a query as the app's role.

use proximity_sdk::os::uninstall_app_service;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "debian-12";
const PORT: u16 = 5432;
/// Debian 12's `postgresql` is 15; the cluster its package creates is `main`.
const CLUSTER_DIR: &str = "/etc/postgresql/15/main";
const SERVICE: &str = "postgresql@15-main";
const PACKAGES: &[&str] = &["postgresql"];
/// What `upgrade` refreshes: the server, its client and Debian's cluster tools.
const UPGRADE_PACKAGES: &[&str] =
    &["postgresql", "postgresql-15", "postgresql-client-15", "postgresql-common", "postgresql-client-common"];
const SETTINGS_TEMPLATE: &str = include_str!("../postgresql.conf");
const HBA_TEMPLATE: &str = include_str!("../pg_hba.conf");
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);
const START_TIMEOUT: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The query every check runs as the app's role.
const PROBE_QUERY: &str = "SELECT 1";

struct PostgreSql;

/// The parameters, checked beyond what the manifest's patterns say.
struct Settings<'a> {
    database: &'a str,
    user: &'a str,
    password: &'a str,
    allowed_network: &'a str,
    max_connections: i64,
}

impl<'a> Settings<'a> {
    fn from(ctx: &'a Context) -> Result<Self> {
        let settings = Settings {
            database: ctx.param_str("database")?,
            user: ctx.param_str("user")?,
            password: ctx.param_str("password")?,
            allowed_network: ctx.param_str("allowed-network")?,
            max_connections: ctx.param_int("max-connections")?,
        };
        if settings.user == "postgres" || settings.user.starts_with("pg_") {
            return Err(Error::invalid_input(format!(
                "parameter `user`: `{}` is reserved by PostgreSQL; choose another name",
                settings.user
            )));
        }
        if matches!(settings.database, "postgres" | "template0" | "template1") {
            return Err(Error::invalid_input(format!(
                "parameter `database`: `{}` is one of PostgreSQL's own databases; choose another name",
                settings.database
            )));
        }
        check_cidr(settings.allowed_network)?;
        Ok(settings)
    }
}

impl Recipe for PostgreSql {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let settings = Settings::from(ctx)?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;

        progress::step("Installing PostgreSQL");
        c.install_packages_within(PACKAGES, PACKAGE_TIMEOUT)?;

        configure_and_start(&c, &settings)?;
        Ok(app_info(&settings, c.address()?))
    }

    /// Debian's newest PostgreSQL 15 packages, then the app's current
    /// parameters written and applied again.
    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let settings = Settings::from(ctx)?;
        let c = app_container()?;

        progress::step("Upgrading PostgreSQL");
        log::info(format!("from recipe version {from_version}"));
        c.upgrade_packages_within(UPGRADE_PACKAGES, PACKAGE_TIMEOUT).context("upgrading the PostgreSQL packages")?;
        let version = c.run(&["psql", "--version"]).unwrap_or_default();
        if !version.trim().is_empty() {
            log::info(format!("now {}", version.trim()));
        }

        configure_and_start(&c, &settings)?;
        Ok(app_info(&settings, c.address()?))
    }

    /// Stop the server cleanly, so its last writes reach the disk, and keep
    /// it from starting again; the host destroys the container afterwards.
    /// Best effort: a container that is already stopped cannot run the
    /// command, and that must not keep the app from being removed.
    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping PostgreSQL");
        // Stopping postgresql.service stops every cluster (they are PartOf it).
        uninstall_app_service("postgresql")
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let settings = Settings::from(ctx)?;
        let c = app_container()?;
        let service = c.service_check(SERVICE);
        let port = c.port_check("port", PORT, HEALTH_TIMEOUT);
        let query = probe_query(&c, &settings);
        Ok(HealthReport::from_checks(vec![
            service,
            port,
            HealthCheck::from_result(
                "query",
                &query,
                format!("`{PROBE_QUERY}` as {} in {} answered", settings.user, settings.database),
            ),
        ]))
    }
}

fn app_info(settings: &Settings, address: String) -> AppInfo {
    AppInfo::new()
        .with_url(format!("postgresql://{}@{address}:{PORT}/{}", settings.user, settings.database))
        .with_address(address)
        .with_port(PORT)
        .with_output("database", settings.database)
        .with_output("user", settings.user)
}

/// Write the settings and pg_hba.conf, restart the cluster, make sure the
/// role and database exist with the current password, and query as the role.
fn configure_and_start(c: &Container, settings: &Settings) -> Result<()> {
    progress::step("Configuring PostgreSQL");
    let conf = template::render(SETTINGS_TEMPLATE, &[("max-connections", &settings.max_connections.to_string())])?;
    let hba = template::render(
        HBA_TEMPLATE,
        &[("database", settings.database), ("user", settings.user), ("allowed-network", settings.allowed_network)],
    )?;
    let postgres_file = |mode| FileOptions::mode(mode).owner("postgres").group("postgres");
    c.write_file_with(&format!("{CLUSTER_DIR}/conf.d/proximity.conf"), conf, &postgres_file(0o644))?;
    c.write_file_with(&format!("{CLUSTER_DIR}/pg_hba.conf"), hba, &postgres_file(0o640))?;
    c.run(&["systemctl", "enable", "postgresql"])?;
    // The unit waits for the server to accept connections (pg_ctl start -w).
    c.run(&["systemctl", "restart", SERVICE]).context("restarting PostgreSQL")?;

    progress::step("Waiting for PostgreSQL");
    c.wait_port(PORT, START_TIMEOUT)?;

    progress::step("Creating the role and the database");
    let as_postgres = ExecOptions::new().cwd("/").stdin(setup_sql(settings)).timeout(QUERY_TIMEOUT);
    c.run_with(
        &["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-"],
        &as_postgres,
    )
    .context("creating the role and the database")?;

    progress::step("Checking a sign-in");
    probe_query(c, settings).context("signing in with the password")
}

/// The SQL that creates the role and database when missing and sets the
/// role's password. It travels on stdin: the password is never an argument.
/// Names and password are checked by the manifest's patterns (lowercase
/// letters, digits, `_`; the password alphanumeric), quoted all the same.
fn setup_sql(s: &Settings) -> String {
    let (role, db) = (ident(s.user), ident(s.database));
    let (role_text, db_text) = (literal(s.user), literal(s.database));
    let password = literal(s.password);
    format!(
        "SELECT format('CREATE ROLE %I LOGIN', {role_text}) \
         WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {role_text})\\gexec\n\
         ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEROLE PASSWORD {password};\n\
         SELECT format('CREATE DATABASE %I OWNER %I ENCODING ''UTF8'' LC_COLLATE ''C.UTF-8'' LC_CTYPE ''C.UTF-8'' TEMPLATE template0', {db_text}, {role_text}) \
         WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {db_text})\\gexec\n\
         ALTER DATABASE {db} OWNER TO {role};\n\
         REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n\
         GRANT ALL ON DATABASE {db} TO {role};\n"
    )
}

/// `PROBE_QUERY` over TCP on the container's loopback as the app's role, with
/// its password (in the environment, never on the command line).
fn probe_query(c: &Container, s: &Settings) -> Result<()> {
    let options =
        ExecOptions::new().env("PGPASSWORD", s.password).env("PGCONNECT_TIMEOUT", "10").cwd("/").timeout(QUERY_TIMEOUT);
    let port = PORT.to_string();
    let answer = c.run_with(
        &[
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            s.user,
            "-d",
            s.database,
            "-c",
            PROBE_QUERY,
        ],
        &options,
    )?;
    if answer.trim() == "1" {
        Ok(())
    } else {
        Err(Error::backend(format!("PostgreSQL answered {:?} to `{PROBE_QUERY}`", answer.trim())))
    }
}

/// A double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An IPv4 network in CIDR form with octets up to 255 and a prefix up to 32.
fn check_cidr(cidr: &str) -> Result<()> {
    let bad = || {
        Error::invalid_input(format!(
            "parameter `allowed-network`: `{cidr}` is not an IPv4 network like 192.168.1.0/24"
        ))
    };
    let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let octets: Vec<&str> = address.split('.').collect();
    let octets_ok = octets.len() == 4 && octets.iter().all(|o| o.parse::<u8>().is_ok());
    let prefix_ok = prefix.parse::<u8>().is_ok_and(|p| p <= 32);
    if octets_ok && prefix_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

proximity_sdk::export_recipe!(PostgreSql);
