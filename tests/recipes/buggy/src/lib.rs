//! memcached on Debian 12, with two deliberate bugs for the tests of
//! `proximity recipe test`: the configuration goes to the wrong file, and the
//! service restarted has the wrong name.

use proximity_sdk::prelude::*;

const OS_TEMPLATE: &str = "debian-12";
const PORT: u16 = 11211;
/// Bug: Debian's memcached reads /etc/memcached.conf.
const CONFIG_PATH: &str = "/etc/memcache.conf";
/// Bug: the unit is memcached.service.
const SERVICE: &str = "memcache";
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Buggy;

impl Recipe for Buggy {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let cache_mb = ctx.param_int("cache-mb")?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;

        progress::step("Installing memcached");
        c.install_packages(&["memcached"])?;

        progress::step("Configuring memcached");
        c.write_file(CONFIG_PATH, format!("-m {cache_mb}\n-p {PORT}\n-l 0.0.0.0\n-u memcache\n"), 0o644)?;
        c.run(&["systemctl", "restart", SERVICE])?;

        progress::step("Waiting for memcached");
        c.wait_port(PORT, START_TIMEOUT)?;
        let address = c.address()?;
        Ok(AppInfo::new().with_address(address).with_port(PORT))
    }
}

proximity_sdk::export_recipe!(Buggy);
