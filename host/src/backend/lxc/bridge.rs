//! The bridge app containers join, made usable before the first container.
//!
//! - lxc-net's `lxcbr0` (its dnsmasq gives DHCP and DNS, its rules NAT):
//!   started, and started again when an earlier run left only its marks.
//! - Proximity's own bridge, for hosts that already use lxc-net's subnet for
//!   something else (a LAN, a VPN route) or have lxc-net's bridge turned off:
//!   a free subnet, its own dnsmasq and NAT rule, all found again after a
//!   restart.
//! - A bridge the operator manages, which only has to exist.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::super::BackendError;
use super::process::{lock_file, tool};

/// The name of Proximity's own bridge when it picks one itself.
pub const OWN_BRIDGE: &str = "proximity0";
const LXC_BRIDGE: &str = "lxcbr0";

const LXC_NET: &str = "/usr/libexec/lxc/lxc-net";
/// lxc-net's settings; its own defaults apply to what the file leaves out.
const LXC_NET_DEFAULTS: &str = "/etc/default/lxc-net";
const LXC_NET_NETWORK: &str = "10.0.3.0/24";
/// Where lxc-net keeps its state; it survives a reboot-less restart of the
/// machine's processes, so it can claim a network that is no longer there.
const LXC_NET_RUN: &str = "/run/lxc";
const LXC_NET_LOCK: &str = "/run/lxc/proximity-lxc-net.lock";

/// State of Proximity's own bridges (locks, dnsmasq pid files) and their leases.
const OWN_RUN: &str = "/run/proximity";
const OWN_LEASES: &str = "/var/lib/proximity";
/// Own subnets are /24s picked from here, the first one no route uses.
const OWN_POOL: &str = "10.213.0.0/16";

const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which bridge app containers join (unless a container's spec names one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bridge {
    /// lxc-net's lxcbr0, unless this host uses its subnet for something else
    /// or turned it off: then Proximity's own bridge, [`OWN_BRIDGE`].
    Auto,
    /// lxc-net's lxcbr0, whatever else the host routes.
    LxcNet,
    /// A bridge Proximity creates and serves: DHCP and DNS from its own
    /// dnsmasq, NAT to the outside. Without a subnet, a free /24 is picked.
    Own { name: String, subnet: Option<Ipv4Net> },
    /// A bridge the operator set up; it must exist.
    Existing(String),
}

impl FromStr for Bridge {
    type Err = String;

    /// `auto`, `lxcbr0`, `proximity0` (Proximity's own, a free subnet),
    /// `proximity0=10.20.30.0/24`, or the name of an existing bridge.
    fn from_str(text: &str) -> Result<Self, String> {
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 15
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        match text {
            "auto" => Ok(Bridge::Auto),
            LXC_BRIDGE => Ok(Bridge::LxcNet),
            OWN_BRIDGE => Ok(Bridge::Own { name: OWN_BRIDGE.into(), subnet: None }),
            _ => match text.split_once('=') {
                Some((name, subnet)) if name == OWN_BRIDGE => {
                    let subnet: Ipv4Net = subnet.parse().map_err(|_| format!("`{subnet}` is not an IPv4 subnet"))?;
                    if subnet.prefix_len() > 29 {
                        return Err(format!("subnet {subnet} is too small for a bridge (at most /29)"));
                    }
                    Ok(Bridge::Own { name: name.into(), subnet: Some(subnet.trunc()) })
                }
                Some(_) => Err(format!("only {OWN_BRIDGE} takes a subnet (`{OWN_BRIDGE}=10.20.30.0/24`)")),
                None if valid_name(text) => Ok(Bridge::Existing(text.into())),
                None => Err(format!("`{text}` is not a valid bridge name")),
            },
        }
    }
}

/// Make `bridge` usable and return the name of the bridge containers join.
pub async fn ensure(bridge: &Bridge) -> Result<String, BackendError> {
    match bridge {
        Bridge::LxcNet => ensure_lxc_net().await.map(|()| LXC_BRIDGE.to_string()),
        Bridge::Existing(name) => {
            if link_exists(name) {
                Ok(name.clone())
            } else {
                Err(BackendError::NotFound(format!(
                    "bridge `{name}` does not exist; create it, or use `auto`, `{LXC_BRIDGE}` or `{OWN_BRIDGE}`"
                )))
            }
        }
        Bridge::Own { name, subnet } => ensure_own(name, *subnet).await.map(|_| name.clone()),
        Bridge::Auto => {
            let lxc_net = LxcNetSettings::read(Path::new(LXC_NET_DEFAULTS));
            match auto_choice(&lxc_net, &routes().await?) {
                AutoChoice::LxcNet => ensure_lxc_net().await.map(|()| LXC_BRIDGE.to_string()),
                AutoChoice::Own(why) => {
                    tracing::info!("using Proximity's own bridge {OWN_BRIDGE}: {why}");
                    ensure_own(OWN_BRIDGE, None).await.map(|_| OWN_BRIDGE.to_string())
                }
            }
        }
    }
}

/// What lxc-net would set up, from its defaults file.
#[derive(Debug)]
pub(super) struct LxcNetSettings {
    use_bridge: bool,
    bridge: String,
    network: Ipv4Net,
}

impl LxcNetSettings {
    fn read(path: &Path) -> Self {
        Self::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    /// The `KEY="value"` lines lxc-net sources; anything fancier is ignored.
    pub(super) fn parse(text: &str) -> Self {
        let mut settings =
            LxcNetSettings { use_bridge: true, bridge: LXC_BRIDGE.into(), network: LXC_NET_NETWORK.parse().unwrap() };
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else { continue };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            match key.trim() {
                "USE_LXC_BRIDGE" => settings.use_bridge = value == "true",
                "LXC_BRIDGE" => settings.bridge = value.to_string(),
                "LXC_NETWORK" => {
                    if let Ok(network) = value.parse::<Ipv4Net>() {
                        settings.network = network.trunc();
                    }
                }
                _ => {}
            }
        }
        settings
    }
}

/// A route of the host's main table: where a network is reached.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub network: Ipv4Net,
    pub dev: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum AutoChoice {
    LxcNet,
    /// Why lxcbr0 is not used.
    Own(String),
}

/// lxcbr0, unless lxc-net is off or set up differently, or another device
/// already reaches (part of) lxc-net's subnet: containers there would shadow
/// that network, or never be reached.
pub(super) fn auto_choice(lxc_net: &LxcNetSettings, routes: &[Route]) -> AutoChoice {
    if !lxc_net.use_bridge {
        return AutoChoice::Own(format!("lxc-net's bridge is turned off in {LXC_NET_DEFAULTS}"));
    }
    if lxc_net.bridge != LXC_BRIDGE {
        return AutoChoice::Own(format!("lxc-net is set up with bridge `{}` in {LXC_NET_DEFAULTS}", lxc_net.bridge));
    }
    match routes.iter().find(|r| r.dev != lxc_net.bridge && overlaps(&r.network, &lxc_net.network)) {
        Some(route) => AutoChoice::Own(format!(
            "lxc-net's subnet {} is already used on this host ({} via {})",
            lxc_net.network, route.network, route.dev
        )),
        None => AutoChoice::LxcNet,
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first /24 of [`OWN_POOL`] that no route touches.
pub(super) fn pick_subnet(routes: &[Route]) -> Option<Ipv4Net> {
    let pool: Ipv4Net = OWN_POOL.parse().unwrap();
    pool.subnets(24).ok()?.find(|candidate| !routes.iter().any(|r| overlaps(&r.network, candidate)))
}

/// The host's IPv4 routes (main table), the default route left out.
async fn routes() -> Result<Vec<Route>, BackendError> {
    let json = tool("ip", ["-j", "-4", "route", "show"], IP_TIMEOUT).await?;
    parse_routes(&json)
}

pub(super) fn parse_routes(json: &str) -> Result<Vec<Route>, BackendError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        dst: String,
        #[serde(default)]
        dev: String,
    }
    let raw: Vec<Raw> = serde_json::from_str(json)
        .map_err(|err| BackendError::Failed(format!("cannot read `ip -j route` output: {err}")))?;
    Ok(raw
        .into_iter()
        .filter_map(|r| {
            // A bare address is a /32 route.
            let network =
                r.dst.parse::<Ipv4Net>().ok().or_else(|| r.dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))?;
            Some(Route { network: network.trunc(), dev: r.dev })
        })
        .collect())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The pid in `pid_file`, if it is a running dnsmasq.
fn live_dnsmasq(pid_file: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(pid_file).ok()?.trim().parse::<i32>().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (pid > 1 && comm.trim() == "dnsmasq").then_some(pid)
}

fn dnsmasq_alive(pid_file: &Path) -> bool {
    live_dnsmasq(pid_file).is_some()
}

/// `lxcbr0` needs lxc-net's dnsmasq for DHCP and DNS, and nothing restarts it
/// on hosts without a service manager: when the bridge is missing or its
/// dnsmasq has died (lxc-net's own "already running" mark stays behind),
/// lxc-net is started anew.
async fn ensure_lxc_net() -> Result<(), BackendError> {
    let run = Path::new(LXC_NET_RUN);
    let pid_file = run.join("dnsmasq.pid");
    let up = || link_exists(LXC_BRIDGE) && dnsmasq_alive(&pid_file);
    if up() {
        return Ok(());
    }
    create_dir(run).await?;
    let _lock = lock_file(Path::new(LXC_NET_LOCK)).await?;
    if up() {
        return Ok(()); // another task or process started it meanwhile
    }
    // lxc-net refuses to start while its mark says it runs, and its stop would
    // `kill -9` whatever process now holds the stale pid: drop both files.
    for stale in ["network_up", "dnsmasq.pid"] {
        let _ = std::fs::remove_file(run.join(stale));
    }
    tracing::info!("starting lxc-net ({LXC_BRIDGE} with DHCP, DNS and NAT)");
    tool(LXC_NET, ["start"], Duration::from_secs(60)).await?;
    if up() {
        Ok(())
    } else {
        Err(BackendError::Failed(format!("`{LXC_NET} start` ran but {LXC_BRIDGE} or its dnsmasq is still missing")))
    }
}

async fn create_dir(dir: &Path) -> Result<(), BackendError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| BackendError::Failed(format!("creating {}: {err}", dir.display())))
}

fn own_pid_file(name: &str) -> PathBuf {
    Path::new(OWN_RUN).join(format!("{name}.dnsmasq.pid"))
}

/// The IPv4 subnet already on a link, if any.
async fn link_subnet(name: &str) -> Result<Option<Ipv4Net>, BackendError> {
    #[derive(serde::Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<Addr>,
    }
    #[derive(serde::Deserialize)]
    struct Addr {
        local: Ipv4Addr,
        prefixlen: u8,
    }
    let json = tool("ip", ["-j", "-4", "addr", "show", "dev", name], IP_TIMEOUT).await?;
    let links: Vec<Link> = serde_json::from_str(&json)
        .map_err(|err| BackendError::Failed(format!("cannot read `ip -j addr` output: {err}")))?;
    Ok(links.iter().flat_map(|l| &l.addr_info).find_map(|a| Ipv4Net::new(a.local, a.prefixlen).ok()))
}

/// Create (or find again) Proximity's own bridge: its address is the
/// subnet's first host, containers get the rest over DHCP. Returns the subnet.
async fn ensure_own(name: &str, wanted: Option<Ipv4Net>) -> Result<Ipv4Net, BackendError> {
    create_dir(Path::new(OWN_RUN)).await?;
    let _lock = lock_file(&Path::new(OWN_RUN).join(format!("{name}.lock"))).await?;
    if !link_exists(name) {
        tool("ip", ["link", "add", "name", name, "type", "bridge"], IP_TIMEOUT).await?;
    }
    let subnet = match link_subnet(name).await? {
        Some(on_link) => {
            if wanted.is_some_and(|w| w != on_link.trunc()) {
                return Err(BackendError::InvalidInput(format!(
                    "bridge {name} already has {on_link}, not {}; remove it (`ip link del {name}`) to change it",
                    wanted.unwrap()
                )));
            }
            on_link
        }
        None => {
            let subnet = match wanted {
                Some(subnet) => subnet,
                None => pick_subnet(&routes().await?)
                    .ok_or_else(|| BackendError::Failed(format!("no free /24 left in {OWN_POOL} for bridge {name}")))?,
            };
            let gateway = Ipv4Net::new(first_host(&subnet), subnet.prefix_len()).unwrap();
            tool("ip", ["addr", "add", &gateway.to_string(), "dev", name], IP_TIMEOUT).await?;
            gateway
        }
    };
    tool("ip", ["link", "set", name, "up"], IP_TIMEOUT).await?;
    enable_forwarding().await?;
    for rule in nat_rules(name, &subnet.trunc()) {
        ensure_rule(&rule).await?;
    }
    let pid_file = own_pid_file(name);
    if !dnsmasq_alive(&pid_file) {
        start_dnsmasq(name, &subnet, &pid_file).await?;
    }
    Ok(subnet.trunc())
}

fn first_host(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

async fn enable_forwarding() -> Result<(), BackendError> {
    tokio::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .await
        .map_err(|err| BackendError::Failed(format!("enabling IPv4 forwarding: {err}")))
}

/// The iptables rules of an own bridge: (table, chain, rule).
fn nat_rules(name: &str, subnet: &Ipv4Net) -> Vec<Rule> {
    let s = subnet.to_string();
    let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    vec![
        ("nat", "POSTROUTING", words(&["-s", &s, "!", "-d", &s, "-j", "MASQUERADE"])),
        ("filter", "FORWARD", words(&["-i", name, "-j", "ACCEPT"])),
        ("filter", "FORWARD", words(&["-o", name, "-j", "ACCEPT"])),
    ]
}

type Rule = (&'static str, &'static str, Vec<String>);

/// `iptables` arguments applying `op` (`-C`, `-I`, `-D`) to `rule`.
fn iptables_args(op: &str, (table, chain, rule): &Rule) -> Vec<String> {
    let mut args = vec!["-w".to_string(), "-t".into(), table.to_string(), op.into(), chain.to_string()];
    args.extend(rule.iter().cloned());
    args
}

/// Add an iptables rule unless `-C` finds it there already.
async fn ensure_rule(rule: &Rule) -> Result<(), BackendError> {
    if tool("iptables", iptables_args("-C", rule), IP_TIMEOUT).await.is_ok() {
        return Ok(());
    }
    tool("iptables", iptables_args("-I", rule), IP_TIMEOUT).await.map(|_| ())
}

async fn start_dnsmasq(name: &str, subnet: &Ipv4Net, pid_file: &Path) -> Result<(), BackendError> {
    let gateway = first_host(subnet);
    let last = Ipv4Addr::from(u32::from(subnet.broadcast()) - 1);
    let first = Ipv4Addr::from(u32::from(gateway) + 1);
    create_dir(Path::new(OWN_LEASES)).await?;
    let leases = Path::new(OWN_LEASES).join(format!("{name}.leases"));
    let args = [
        // No /etc/dnsmasq.conf: this instance is configured here alone.
        "--conf-file=/dev/null".to_string(),
        "--strict-order".into(),
        "--bind-interfaces".into(),
        "--except-interface=lo".into(),
        format!("--interface={name}"),
        format!("--listen-address={gateway}"),
        format!("--dhcp-range={first},{last}"),
        format!("--dhcp-lease-max={}", u32::from(last) - u32::from(first) + 1),
        "--dhcp-no-override".into(),
        "--dhcp-authoritative".into(),
        format!("--dhcp-leasefile={}", leases.display()),
        format!("--pid-file={}", pid_file.display()),
    ];
    tracing::info!("starting dnsmasq for {name} ({subnet}: DHCP and DNS)");
    // dnsmasq forks into the background and closes its output: `tool` returns.
    tool("dnsmasq", args, Duration::from_secs(30)).await?;
    if dnsmasq_alive(pid_file) {
        Ok(())
    } else {
        Err(BackendError::Failed(format!("dnsmasq for {name} started but is not running")))
    }
}

/// Take down one of Proximity's own bridges: its dnsmasq, rules and link.
/// What is already gone is skipped.
pub async fn remove_own(name: &str) -> Result<(), BackendError> {
    let pid_file = own_pid_file(name);
    if let Some(pid) = live_dnsmasq(&pid_file) {
        // SAFETY: kill(2) on the pid just checked to be this bridge's dnsmasq.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = std::fs::remove_file(&pid_file);
    if !link_exists(name) {
        return Ok(());
    }
    if let Some(subnet) = link_subnet(name).await? {
        for rule in nat_rules(name, &subnet.trunc()) {
            let _ = tool("iptables", iptables_args("-D", &rule), IP_TIMEOUT).await;
        }
    }
    tool("ip", ["link", "del", name], IP_TIMEOUT).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(network: &str, dev: &str) -> Route {
        Route { network: network.parse().unwrap(), dev: dev.into() }
    }

    #[test]
    fn bridge_settings_parse_with_clear_errors() {
        assert_eq!("auto".parse::<Bridge>(), Ok(Bridge::Auto));
        assert_eq!("lxcbr0".parse::<Bridge>(), Ok(Bridge::LxcNet));
        assert_eq!("proximity0".parse::<Bridge>(), Ok(Bridge::Own { name: "proximity0".into(), subnet: None }));
        assert_eq!(
            "proximity0=10.20.30.7/24".parse::<Bridge>(),
            Ok(Bridge::Own { name: "proximity0".into(), subnet: Some("10.20.30.0/24".parse().unwrap()) })
        );
        assert_eq!("vmbr1".parse::<Bridge>(), Ok(Bridge::Existing("vmbr1".into())));
        assert!("proximity0=10.1.2.3/30".parse::<Bridge>().unwrap_err().contains("too small"));
        assert!("proximity0=nonsense".parse::<Bridge>().unwrap_err().contains("not an IPv4 subnet"));
        assert!("vmbr1=10.0.0.0/24".parse::<Bridge>().unwrap_err().contains("only proximity0"));
        assert!("br;rm".parse::<Bridge>().unwrap_err().contains("not a valid bridge name"));
        assert!("a-very-long-bridge-name".parse::<Bridge>().is_err());
    }

    #[test]
    fn lxc_net_settings_follow_its_defaults_file() {
        let defaults = LxcNetSettings::parse("");
        assert!(defaults.use_bridge);
        assert_eq!((defaults.bridge.as_str(), defaults.network.to_string().as_str()), ("lxcbr0", "10.0.3.0/24"));
        let set = LxcNetSettings::parse(
            "# comment\nUSE_LXC_BRIDGE=\"false\"\nLXC_BRIDGE='br9'\nLXC_NETWORK=\"10.9.0.1/16\"\n",
        );
        assert!(!set.use_bridge);
        assert_eq!((set.bridge.as_str(), set.network.to_string().as_str()), ("br9", "10.9.0.0/16"));
    }

    #[test]
    fn auto_keeps_lxcbr0_unless_its_subnet_is_used_elsewhere() {
        let lxc_net = LxcNetSettings::parse("USE_LXC_BRIDGE=\"true\"\n");
        let host = [route("192.0.2.0/24", "eth0"), route("10.0.3.0/24", "lxcbr0")];
        assert_eq!(auto_choice(&lxc_net, &host), AutoChoice::LxcNet);

        // A LAN on the same subnet, or a VPN route covering it.
        for (network, dev) in [("10.0.3.0/24", "eth1"), ("10.0.0.0/8", "tun0"), ("10.0.3.128/25", "wg0")] {
            let mut taken = host.to_vec();
            taken.push(route(network, dev));
            match auto_choice(&lxc_net, &taken) {
                AutoChoice::Own(why) => assert!(why.contains(dev) && why.contains("10.0.3.0/24"), "{why}"),
                other => panic!("{network} via {dev}: {other:?}"),
            }
        }
        let off = LxcNetSettings::parse("USE_LXC_BRIDGE=\"false\"\n");
        assert!(matches!(auto_choice(&off, &host), AutoChoice::Own(why) if why.contains("turned off")));
        let renamed = LxcNetSettings::parse("LXC_BRIDGE=\"br9\"\n");
        assert!(matches!(auto_choice(&renamed, &host), AutoChoice::Own(why) if why.contains("br9")));
    }

    #[test]
    fn own_subnets_avoid_every_route() {
        assert_eq!(pick_subnet(&[]).unwrap().to_string(), "10.213.0.0/24");
        let used = [route("10.213.0.0/24", "proximity0"), route("10.213.1.7/32", "tun0"), route("10.0.3.0/24", "x")];
        assert_eq!(pick_subnet(&used).unwrap().to_string(), "10.213.2.0/24");
        assert_eq!(pick_subnet(&[route("10.0.0.0/8", "vpn")]), None);
    }

    #[test]
    fn routes_come_from_ip_json() {
        let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
            {"dst":"10.0.3.0/24","dev":"lxcbr0","protocol":"kernel","scope":"link","prefsrc":"10.0.3.1","flags":[]},
            {"dst":"198.51.100.7","dev":"tun0","flags":[]}]"#;
        let routes = parse_routes(json).unwrap();
        let shown: Vec<String> = routes.iter().map(|r| format!("{} {}", r.network, r.dev)).collect();
        assert_eq!(shown, ["10.0.3.0/24 lxcbr0", "198.51.100.7/32 tun0"]);
        assert!(parse_routes("not json").is_err());
    }
}
