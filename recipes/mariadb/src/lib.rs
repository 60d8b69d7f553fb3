//! MariaDB 10.11 on Debian 12: the distribution's package, one database and
//! one account whose password the host generates, reachable on the
//! container's address from the allowed network.
//!
//! Install: container, `mariadb-server`, the recipe's settings in
//! `mariadb.conf.d/`, restart, then the database and the account (created
//! when missing, the password set every time) and a real query as that
//! account. Upgrade: Debian's newest 10.11 packages, the same settings written
//! again, restart, the same steps. Uninstall: a clean shutdown (the host
//! destroys the container afterwards). Health: the service, the port from the
//! host, and a query as the app's account.

use proximity_sdk::os::uninstall_app_service;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "debian-12";
const PORT: u16 = 3306;
const SERVICE: &str = "mariadb";
const PACKAGES: &[&str] = &["mariadb-server"];
/// What `upgrade` refreshes: the server, its client and their common files.
const UPGRADE_PACKAGES: &[&str] =
    &["mariadb-server", "mariadb-server-core", "mariadb-client", "mariadb-client-core", "mariadb-common"];
/// Read after Debian's own `50-server.cnf`, so its `bind-address` wins.
const SETTINGS_PATH: &str = "/etc/mysql/mariadb.conf.d/99-proximity.cnf";
const SETTINGS_TEMPLATE: &str = include_str!("../mariadb.cnf");
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);
const START_TIMEOUT: Duration = Duration::from_secs(120);
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The query every check runs as the app's account.
const PROBE_QUERY: &str = "SELECT 1";

struct MariaDb;

/// The parameters, checked beyond what the manifest's patterns say.
struct Settings<'a> {
    database: &'a str,
    user: &'a str,
    password: &'a str,
    /// The account's host part for the allowed network: `%`, an address, or
    /// MariaDB's `network/netmask` form.
    network_host: String,
    max_connections: i64,
}

impl<'a> Settings<'a> {
    fn from(ctx: &'a Context) -> Result<Self> {
        let user = ctx.param_str("user")?;
        if matches!(user, "root" | "mysql" | "mariadb.sys") {
            return Err(Error::invalid_input(format!(
                "parameter `user`: `{user}` is one of MariaDB's own accounts; choose another name"
            )));
        }
        let database = ctx.param_str("database")?;
        if matches!(database, "mysql" | "information_schema" | "performance_schema" | "sys") {
            return Err(Error::invalid_input(format!(
                "parameter `database`: `{database}` is one of MariaDB's own databases; choose another name"
            )));
        }
        Ok(Settings {
            database,
            user,
            password: ctx.param_str("password")?,
            network_host: network_host(ctx.param_str("allowed-network")?)?,
            max_connections: ctx.param_int("max-connections")?,
        })
    }
}

impl Recipe for MariaDb {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let settings = Settings::from(ctx)?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;

        progress::step("Installing MariaDB");
        c.install_packages_within(PACKAGES, PACKAGE_TIMEOUT)?;

        configure_and_start(&c, &settings)?;
        Ok(app_info(&settings, c.address()?))
    }

    /// Debian's newest MariaDB 10.11 packages, then the app's current
    /// parameters written and applied again.
    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let settings = Settings::from(ctx)?;
        let c = app_container()?;

        progress::step("Upgrading MariaDB");
        log::info(format!("from recipe version {from_version}"));
        c.upgrade_packages_within(UPGRADE_PACKAGES, PACKAGE_TIMEOUT).context("upgrading the MariaDB packages")?;

        configure_and_start(&c, &settings)?;
        Ok(app_info(&settings, c.address()?))
    }

    /// Stop the server cleanly, so its last writes reach the disk, and keep
    /// it from starting again; the host destroys the container afterwards.
    /// Best effort: a container that is already stopped cannot run the
    /// command, and that must not keep the app from being removed.
    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping MariaDB");
        uninstall_app_service(SERVICE)
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
        .with_url(format!("mysql://{}@{address}:{PORT}/{}", settings.user, settings.database))
        .with_address(address)
        .with_port(PORT)
        .with_output("database", settings.database)
        .with_output("user", settings.user)
}

/// Write the settings, restart the server, make sure the database and the
/// account exist with the current password, and query as the account.
fn configure_and_start(c: &Container, settings: &Settings) -> Result<()> {
    progress::step("Configuring MariaDB");
    let conf = template::render(SETTINGS_TEMPLATE, &[("max-connections", &settings.max_connections.to_string())])?;
    c.write_file(SETTINGS_PATH, conf, 0o644)?;
    c.run(&["systemctl", "enable", SERVICE])?;
    // The unit is Type=notify: it returns once the server accepts connections.
    c.run(&["systemctl", "restart", SERVICE]).context("restarting MariaDB")?;

    progress::step("Waiting for MariaDB");
    c.wait_port(PORT, START_TIMEOUT)?;

    progress::step("Creating the database and the account");
    // root signs in through the unix socket, as the container's root.
    let as_root = ExecOptions::new().cwd("/").stdin(setup_sql(settings)).timeout(QUERY_TIMEOUT);
    c.run_with(&["mariadb", "--batch"], &as_root).context("creating the database and the account")?;

    progress::step("Checking a sign-in");
    probe_query(c, settings).context("signing in with the password")
}

/// The SQL that creates the database and the account (for the allowed
/// network, and `localhost` for the checks inside the container) when
/// missing, removes the account's other hosts, and sets the password. It travels on stdin: the password is
/// never an argument.
fn setup_sql(s: &Settings) -> String {
    let db = format!("`{}`", s.database.replace('`', "``"));
    let password = literal(s.password);
    let mut sql = format!("CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n");
    let mut hosts = vec!["localhost".to_string()];
    if s.network_host != "localhost" {
        hosts.push(s.network_host.clone());
    }
    // A network changed since the last run: the account for the old one goes.
    let kept: Vec<String> = hosts.iter().map(|h| literal(h)).collect();
    let (user, kept) = (literal(s.user), kept.join(", "));
    sql.push_str(&format!(
        "DELETE FROM mysql.global_priv WHERE User = {user} AND Host NOT IN ({kept});\n\
         DELETE FROM mysql.db WHERE User = {user} AND Host NOT IN ({kept});\n\
         FLUSH PRIVILEGES;\n"
    ));
    for host in hosts {
        let account = format!("{}@{}", literal(s.user), literal(&host));
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password};\n\
             ALTER USER {account} IDENTIFIED BY {password};\n\
             GRANT ALL PRIVILEGES ON {db}.* TO {account};\n"
        ));
    }
    sql
}

/// `PROBE_QUERY` through the server's socket as the app's account, with its
/// password (in the environment, never on the command line).
fn probe_query(c: &Container, s: &Settings) -> Result<()> {
    let options = ExecOptions::new().env("MYSQL_PWD", s.password).cwd("/").timeout(QUERY_TIMEOUT);
    let answer = c.run_with(
        &[
            "mariadb",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=10",
            "-u",
            s.user,
            "-D",
            s.database,
            "-e",
            PROBE_QUERY,
        ],
        &options,
    )?;
    if answer.trim() == "1" {
        Ok(())
    } else {
        Err(Error::backend(format!("MariaDB answered {:?} to `{PROBE_QUERY}`", answer.trim())))
    }
}

/// A single-quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// MariaDB's host part for an IPv4 network in CIDR form: `%` for every
/// address, the address itself for a /32, else `network/netmask`.
fn network_host(cidr: &str) -> Result<String> {
    let bad = || {
        Error::invalid_input(format!(
            "parameter `allowed-network`: `{cidr}` is not an IPv4 network like 192.168.1.0/24"
        ))
    };
    let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let octets: Vec<u8> =
        address.split('.').map(|o| o.parse::<u8>()).collect::<core::result::Result<_, _>>().map_err(|_| bad())?;
    let [a, b, c, d] = octets[..] else { return Err(bad()) };
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    if prefix == 0 {
        return Ok("%".into());
    }
    let mask = u32::MAX << (32 - prefix);
    let network = u32::from_be_bytes([a, b, c, d]) & mask;
    let dotted = |n: u32| {
        let [a, b, c, d] = n.to_be_bytes();
        format!("{a}.{b}.{c}.{d}")
    };
    Ok(if prefix == 32 { dotted(network) } else { format!("{}/{}", dotted(network), dotted(mask)) })
}

proximity_sdk::export_recipe!(MariaDb);
