//! Benchmark recipe: `calls` capability calls of one `kind`, nothing else,
//! so the host can measure the cost of a call across the sandbox boundary.

use core::hint::black_box;

use proximity_sdk::prelude::*;

const OS_TEMPLATE: &str = "alpine-3.20";
const WRITE_PATH: &str = "/tmp/proximity-bench";
const WRITE_CONTENTS: [u8; 16] = *b"proximity-bench\n";

struct Bench;

impl Recipe for Bench {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let calls: u64 = ctx.param_int_as("calls")?;
        let kind = ctx.param_str("kind")?;

        // One loop per kind, so the loop body is the call and nothing else.
        match kind {
            "log" => {
                for _ in 0..calls {
                    log::debug("bench");
                }
            }
            "id" => {
                let c = create(ctx)?;
                for _ in 0..calls {
                    black_box(c.id());
                }
            }
            "exec" => {
                let c = create(ctx)?;
                for _ in 0..calls {
                    black_box(c.exec(&["true"])?);
                }
            }
            "write" => {
                let c = create(ctx)?;
                for _ in 0..calls {
                    c.write_file(WRITE_PATH, WRITE_CONTENTS, 0o644)?;
                }
            }
            other => return Err(Error::invalid_input(format!("unknown kind `{other}`"))),
        }

        Ok(AppInfo::new().with_output("kind", kind).with_output("calls", calls.to_string()))
    }
}

fn create(ctx: &Context) -> Result<Container> {
    ContainerSpec::new(ctx, OS_TEMPLATE).create()
}

proximity_sdk::export_recipe!(Bench);
