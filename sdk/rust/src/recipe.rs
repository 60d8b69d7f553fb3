//! The `Recipe` trait a recipe implements, and the adapter that exports it
//! through the generated `lifecycle` bindings.

use core::marker::PhantomData;

use crate::bindings::exports::proximity::recipe::lifecycle::Guest;
use crate::bindings::proximity::recipe::types as wit;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::report::{AppInfo, HealthReport};

/// One catalog app's lifecycle. Implement it on a unit struct and export it
/// with [`export_recipe!`](crate::export_recipe).
pub trait Recipe {
    /// Create and configure the app's containers; report where it runs.
    fn install(ctx: &Context) -> Result<AppInfo>;

    /// Undo what `install` did outside the containers. The host destroys the
    /// app's containers itself, so most recipes have nothing to do here.
    fn uninstall(ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Move an installed app from `from_version` to this recipe's version.
    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let _ = (ctx, from_version);
        Err(Error::invalid_input("upgrade not supported"))
    }

    /// Probe the running app.
    fn health(ctx: &Context) -> Result<HealthReport> {
        let _ = ctx;
        Ok(HealthReport::healthy())
    }
}

/// Implements the generated `Guest` trait for any `Recipe`. Used only by
/// `export_recipe!`.
#[doc(hidden)]
pub struct Exported<R>(PhantomData<R>);

impl<R: Recipe> Guest for Exported<R> {
    fn install(ctx: wit::Context) -> core::result::Result<wit::AppInfo, wit::Error> {
        crate::panic_hook::install();
        R::install(&Context::new(ctx)).map_err(Into::into)
    }

    fn uninstall(ctx: wit::Context) -> core::result::Result<(), wit::Error> {
        crate::panic_hook::install();
        R::uninstall(&Context::new(ctx)).map_err(Into::into)
    }

    fn upgrade(ctx: wit::Context, from_version: String) -> core::result::Result<wit::AppInfo, wit::Error> {
        crate::panic_hook::install();
        R::upgrade(&Context::new(ctx), &from_version).map_err(Into::into)
    }

    fn health(ctx: wit::Context) -> core::result::Result<wit::HealthReport, wit::Error> {
        crate::panic_hook::install();
        R::health(&Context::new(ctx)).map_err(Into::into)
    }
}

/// Export a [`Recipe`] implementation as the component's `lifecycle`.
///
/// ```ignore
/// struct Nginx;
/// impl proximity_sdk::Recipe for Nginx { /* ... */ }
/// proximity_sdk::export_recipe!(Nginx);
/// ```
#[macro_export]
macro_rules! export_recipe {
    ($recipe:ty) => {
        // The generated export macro takes an identifier, not a path with
        // generics, hence the alias.
        #[doc(hidden)]
        type __ProximityExportedRecipe = $crate::Exported<$recipe>;
        $crate::bindings::export!(__ProximityExportedRecipe with_types_in $crate::bindings);
    };
}
