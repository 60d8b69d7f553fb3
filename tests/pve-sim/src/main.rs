//! Run the PVE simulator by hand: `cargo run -p proximity-pve-sim -- [--port N]`.

use proximity_pve_sim::{PveSim, SimOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut options = SimOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--port needs a value"))?;
                options.port = value.parse().map_err(|_| anyhow::anyhow!("--port: `{value}` is not a port"))?;
            }
            "--schema" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--schema needs a path"))?;
                options.schema = Some(value.into());
            }
            "-h" | "--help" => {
                println!("usage: proximity-pve-sim [--port N] [--schema PATH]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}` (try --help)"),
        }
    }
    let sim = PveSim::start(options.clone()).await?;
    println!("Proxmox VE simulator");
    println!("  URL:         {}", sim.base_url());
    println!("  fingerprint: {}", sim.fingerprint_sha256());
    println!("  token:       Authorization: {}", sim.token_header());
    println!("  password:    {} / {}", options.password.0, options.password.1);
    println!("  nodes:       {}", options.nodes.join(", "));
    println!("  templates:   {}", options.templates.join(", "));
    println!("Every request is checked against the PVE API schema; rejections are printed below. Ctrl-C stops.");
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let requests = sim.requests();
                for request in &requests[seen..] {
                    let mark = if request.rejected { "REJECTED" } else { "" };
                    println!("{} {} {} {mark} {:?}", request.status, request.method, request.path, request.errors);
                }
                seen = requests.len();
            }
        }
    }
    Ok(())
}
