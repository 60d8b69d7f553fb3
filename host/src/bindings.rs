//! Rust bindings for the `proximity:recipe` world, generated from `wit/`.
//!
//! Every import is async (capabilities wait on infrastructure) and trappable
//! (a host-side fault, or the run's deadline, ends the recipe instead of
//! returning an error it could ignore). Functions returning `result<_, error>`
//! use [`CapabilityError`], which carries either an error the recipe sees or
//! a trap.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "recipe",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "proximity:recipe/lxc.container": crate::capabilities::ContainerHandle,
    },
    additional_derives: [serde::Serialize],
    trappable_error_type: {
        "proximity:recipe/types.error" => crate::capabilities::CapabilityError,
    },
});

pub use exports::proximity::recipe::lifecycle;
pub use proximity::recipe::{exec, files, lxc, probe, progress, proxy, types};
