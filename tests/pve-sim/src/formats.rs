//! Named string formats of the PVE schema (`format: "pve-node"`, …).
//!
//! The ones Proximity's endpoints meet are checked like `PVE::JSONSchema`
//! (and pve-container) check them; any other name is accepted as a string.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("format regex"))
}

macro_rules! regex {
    ($pattern:expr) => {{
        static CELL: OnceLock<Regex> = OnceLock::new();
        re(&CELL, $pattern)
    }};
}

/// Check `value` against the named format; `-list` formats are lists of the base format.
pub fn check(format: &str, value: &str) -> Result<(), String> {
    if let Some(result) = check_one(format, value) {
        return result;
    }
    if let Some(base) = format.strip_suffix("-list") {
        if known(base) {
            for item in split_list(value) {
                check_one(base, item).unwrap_or(Ok(()))?;
            }
        }
    }
    Ok(())
}

/// PVE's `split_list`: separated by commas, semicolons, spaces or NULs.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split([',', ';', ' ', '\0', '\t', '\n']).filter(|s| !s.is_empty())
}

fn known(format: &str) -> bool {
    check_one(format, "").is_some()
}

fn check_one(format: &str, value: &str) -> Option<Result<(), String>> {
    let ok = |good: bool, message: &str| if good { Ok(()) } else { Err(message.to_string()) };
    Some(match format {
        "pve-node" => ok(
            regex!(r"^(?i:[a-z0-9]([a-z0-9\-]*[a-z0-9])?)$").is_match(value),
            "value does not look like a valid node name",
        ),
        "pve-vmid" => ok(regex!(r"^[1-9][0-9]{2,8}$").is_match(value), "value does not look like a valid VM ID"),
        "pve-storage-id" => ok(
            regex!(r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$").is_match(value),
            &format!("storage ID '{value}' contains illegal characters"),
        ),
        "pve-volume-id" => ok(
            regex!(r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9]):.+$").is_match(value),
            &format!("unable to parse volume ID '{value}'"),
        ),
        "pve-lxc-mp-string" => {
            ok(!regex!(r"(^|/)\.\.?(/|$)").is_match(value), &format!("{value} contains illegal character sequences"))
        }
        "pve-lxc-dev-string" => ok(
            value.starts_with("/dev/") && !regex!(r"/\.\.?(/|$)").is_match(value),
            &format!("{value} is not a valid device path"),
        ),
        "disk-size" => ok(regex!(r"^\d+(\.\d+)?[KMGT]?$").is_match(value), "unable to parse size"),
        "pve-configid" => ok(regex!(r"^(?i:[a-z][a-z0-9_-]+)$").is_match(value), "invalid configuration ID"),
        "pve-poolid" => ok(regex!(r"^[A-Za-z0-9_\-]+$").is_match(value), "invalid pool ID"),
        "pve-realm" => {
            ok(regex!(r"^[A-Za-z][A-Za-z0-9\.\-_]+$").is_match(value), "value does not look like a valid realm")
        }
        "pve-userid" => ok(
            regex!(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+$").is_match(value),
            "value does not look like a valid user name",
        ),
        "pve-tag" => ok(regex!(r"^(?i:[a-z0-9_][a-z0-9_\-+.]*)$").is_match(value), "invalid tag"),
        "pve-ct-timezone" => ok(regex!(r"^[\w/+\-]+$").is_match(value), "invalid time zone"),
        "pve-iface" => {
            ok(regex!(r"^[a-zA-Z][a-zA-Z0-9_]{1,20}([:\.]\d+)?$").is_match(value), "invalid network interface name")
        }
        "pve-storage-content" => ok(
            matches!(value, "images" | "rootdir" | "vztmpl" | "iso" | "backup" | "snippets" | "import" | "none"),
            &format!("invalid content type '{value}'"),
        ),
        "pve-hotplug-features" => ok(
            value == "0"
                || value == "1"
                || split_list(value).all(|f| matches!(f, "network" | "disk" | "cpu" | "memory" | "usb" | "cloudinit")),
            &format!("invalid hotplug feature '{value}'"),
        ),
        "pve-startup-order" => ok(
            value.split(',').filter(|p| !p.is_empty()).all(|part| {
                let (key, val) = part.split_once('=').unwrap_or(("order", part));
                matches!(key, "order" | "up" | "down") && val.parse::<u64>().is_ok()
            }),
            "unable to parse startup options",
        ),
        "urlencoded" => {
            ok(regex!(r"^[-%a-zA-Z0-9_.!~*'()]*$").is_match(value), &format!("invalid urlencoded string: {value}"))
        }
        "email" => ok(
            regex!(r"^[\w+\-~.]+@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*$").is_match(value),
            "value does not look like a valid email address",
        ),
        "dns-name" => ok(is_dns_name(value), "value does not look like a valid DNS name"),
        "ipv4" => ok(value.parse::<Ipv4Addr>().is_ok(), "value does not look like a valid IPv4 address"),
        "ipv6" => ok(value.parse::<Ipv6Addr>().is_ok(), "value does not look like a valid IPv6 address"),
        "ip" => ok(is_ip(value), "value does not look like a valid IP address"),
        "address" => ok(is_ip(value) || is_dns_name(value), "value does not look like a valid address"),
        "ipv4mask" => ok(value.parse::<Ipv4Addr>().is_ok(), "value does not look like a valid IP netmask"),
        "CIDRv4" => ok(is_cidr(value, 4), "value does not look like a valid IPv4 CIDR network"),
        "CIDRv6" => ok(is_cidr(value, 6), "value does not look like a valid IPv6 CIDR network"),
        "CIDR" => ok(is_cidr(value, 4) || is_cidr(value, 6), "value does not look like a valid CIDR network"),
        "IPorCIDR" => ok(
            is_ip(value) || is_cidr(value, 4) || is_cidr(value, 6),
            "value does not look like a valid IP address or CIDR network",
        ),
        "pve-ipv4-config" => ok(
            value == "dhcp" || value == "manual" || is_cidr(value, 4),
            "value does not look like a valid ipv4 network configuration",
        ),
        "pve-ipv6-config" => ok(
            value == "auto" || value == "dhcp" || value == "manual" || is_cidr(value, 6),
            "value does not look like a valid ipv6 network configuration",
        ),
        "lxc-ip-with-ll-iface" => {
            let (ip, iface) = value.split_once('%').unwrap_or((value, ""));
            let ll = !iface.is_empty() && ip.parse::<Ipv6Addr>().is_ok_and(|a| (a.segments()[0] & 0xffc0) == 0xfe80);
            ok((iface.is_empty() && is_ip(ip)) || ll, &format!("not a valid IP address: {value}"))
        }
        "mac-addr" => ok(
            regex!(r"^(?i:[a-f0-9][02468ace](?::[a-f0-9]{2}){5})$").is_match(value),
            "value does not look like a valid unicast MAC address",
        ),
        _ => return None,
    })
}

fn is_ip(value: &str) -> bool {
    value.parse::<Ipv4Addr>().is_ok() || value.parse::<Ipv6Addr>().is_ok()
}

fn is_cidr(value: &str, family: u8) -> bool {
    let Some((ip, mask)) = value.split_once('/') else { return false };
    let Ok(mask) = mask.parse::<u8>() else { return false };
    match family {
        4 => ip.parse::<Ipv4Addr>().is_ok() && mask <= 32,
        _ => ip.parse::<Ipv6Addr>().is_ok() && mask <= 128,
    }
}

fn is_dns_name(value: &str) -> bool {
    regex!(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
        .is_match(value)
}
