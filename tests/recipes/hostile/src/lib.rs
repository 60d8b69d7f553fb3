//! A recipe that attacks its sandbox, for the host's sandbox tests.
//!
//! The `attack` parameter picks one misbehaviour. Each attack that the host
//! should stop with an error returns that error; if an attack unexpectedly
//! succeeds, install returns `Ok` with a `breach` output saying what got
//! through, so a test can tell the two apart.

use core::hint::black_box;

use proximity_sdk::prelude::*;

const OS_TEMPLATE: &str = "alpine-3.20";
/// Far above the manifest's `max-cores = 1`.
const EXCESSIVE_CORES: u32 = 64;
/// A handle number this instance never received.
const FORGED_HANDLE: u32 = 0x1234;
const CHUNK_BYTES: usize = 1 << 20;
const PAGE_BYTES: usize = 4096;

struct Hostile;

impl Recipe for Hostile {
    fn install(ctx: &Context) -> Result<AppInfo> {
        match ctx.param_str("attack")? {
            "loop" => spin_forever(),
            "alloc" => allocate_forever(),
            "ungranted" => exec_without_grant(ctx),
            "exceed-grant" => exceed_grant(ctx),
            "forge" => use_handle(FORGED_HANDLE),
            "reuse" => use_handle(ctx.param_int_as("handle")?),
            "create" => create(ctx),
            "panic" => panic!("hostile recipe panicked on purpose"),
            "ok" => Ok(AppInfo::new()),
            other => Err(Error::invalid_input(format!("unknown attack `{other}`"))),
        }
    }
}

/// Burn CPU until the host's deadline interrupts it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Grow memory 1 MiB at a time, touching every page and keeping every chunk,
/// until the host's memory limit stops it.
fn allocate_forever() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        for i in (0..CHUNK_BYTES).step_by(PAGE_BYTES) {
            chunk[i] = 1;
        }
        kept.push(black_box(chunk));
        black_box(&kept);
    }
}

/// `lxc` is granted, `exec` is not: the exec must come back `denied`.
fn exec_without_grant(ctx: &Context) -> Result<AppInfo> {
    let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;
    let output = c.exec(&["id"])?;
    Ok(breach(format!("exec ran with status {}", output.status)))
}

/// Ask for more cores than the grant allows.
fn exceed_grant(ctx: &Context) -> Result<AppInfo> {
    let c = ContainerSpec::new(ctx, OS_TEMPLATE).cores(EXCESSIVE_CORES).create()?;
    Ok(breach(format!("created container {} with {EXCESSIVE_CORES} cores", c.id())))
}

/// Call a method through a handle this instance does not own.
fn use_handle(handle: u32) -> Result<AppInfo> {
    // SAFETY: deliberately unsound; the host must trap or refuse the call.
    let c = unsafe { Container::from_handle(handle) };
    let id = c.id();
    // Dropping would call resource-drop on the same foreign handle.
    core::mem::forget(c);
    Ok(breach(format!("handle {handle} answered with container id {id}")))
}

/// Create a container and report its handle so a later run can try `reuse`.
fn create(ctx: &Context) -> Result<AppInfo> {
    let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;
    Ok(AppInfo::new().with_output("handle", c.handle().to_string()).with_output("id", c.id()))
}

fn breach(what: String) -> AppInfo {
    AppInfo::new().with_output("breach", what)
}

proximity_sdk::export_recipe!(Hostile);
