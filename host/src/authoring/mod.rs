//! Tools for recipe authors: the edit-build-test loop without a cluster.
//!
//! - [`recipe_test`]: `proximity recipe test DIR` runs the cases of a recipe's
//!   `recipe.test.toml` on the simulator and reports every difference.
//! - [`scaffold`]: `proximity recipe new NAME` writes a recipe directory that
//!   builds and passes its own tests, from a language's template.

pub mod recipe_test;
pub mod scaffold;
