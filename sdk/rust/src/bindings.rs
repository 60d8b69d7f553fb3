//! Bindings generated from the `proximity:recipe` WIT package (world `recipe`).
//!
//! Recipe authors normally never touch this module: the rest of the SDK wraps it.
//! It stays public because the export macro expands inside recipe crates, and
//! because sandbox tests need raw access (e.g. `Container::from_handle`).

wit_bindgen::generate!({
    world: "recipe",
    path: "../../wit",
    // `export_recipe!` expands in the recipe's crate, so the generated export
    // macro must be reachable from there.
    pub_export_macro: true,
    default_bindings_module: "proximity_sdk::bindings",
});
