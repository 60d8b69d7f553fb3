//! What the host hands to every lifecycle export: identity, parameters, target.

use crate::bindings::proximity::recipe::types::{self as wit, ParamValue};
use crate::error::{Error, Result};

pub use crate::bindings::proximity::recipe::types::{Resources, Target};

/// The run's context: parameters (validated by the host against the
/// manifest, defaults filled in, secrets generated), resources and target.
///
/// Parameter getters fail with `invalid-input` naming the parameter, so a
/// recipe can use `?` and the operator still learns which input was wrong.
#[derive(Clone, Debug)]
pub struct Context {
    inner: wit::Context,
}

impl Context {
    /// Wrap the record the host passed to an export.
    pub fn new(inner: wit::Context) -> Self {
        Context { inner }
    }

    /// Name of the app instance; also the default container hostname.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// Unique id of this run.
    pub fn deployment_id(&self) -> &str {
        &self.inner.deployment_id
    }

    /// Version of the recipe being run.
    pub fn recipe_version(&self) -> &str {
        &self.inner.recipe_version
    }

    /// Container resources the operator chose within the manifest's bounds.
    pub fn resources(&self) -> Resources {
        self.inner.resources
    }

    /// Which backend and node the deployment goes to.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// The raw value of a parameter, if the host sent one.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.inner.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A `string`, `secret` or `enum` parameter.
    pub fn param_str(&self, name: &str) -> Result<&str> {
        self.param_str_opt(name)?.ok_or_else(|| missing(name))
    }

    /// An `integer` parameter.
    pub fn param_int(&self, name: &str) -> Result<i64> {
        self.param_int_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A `boolean` parameter.
    pub fn param_bool(&self, name: &str) -> Result<bool> {
        self.param_bool_opt(name)?.ok_or_else(|| missing(name))
    }

    /// An `integer` parameter converted to a narrower type (`u16` for a
    /// port, `u64` for seconds, ...); out of range is `invalid-input`.
    pub fn param_int_as<T: TryFrom<i64>>(&self, name: &str) -> Result<T> {
        let value = self.param_int(name)?;
        T::try_from(value).map_err(|_| {
            Error::invalid_input(format!(
                "parameter `{name}` is out of range for {}: {value}",
                core::any::type_name::<T>()
            ))
        })
    }

    /// A non-negative `integer` parameter counting seconds, e.g. a timeout.
    pub fn param_secs(&self, name: &str) -> Result<core::time::Duration> {
        self.param_int_as::<u64>(name).map(core::time::Duration::from_secs)
    }

    /// A text parameter that may be absent; present with another type is an error.
    pub fn param_str_opt(&self, name: &str) -> Result<Option<&str>> {
        match self.param(name) {
            None => Ok(None),
            Some(ParamValue::Text(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(name, "text", other)),
        }
    }

    /// An integer parameter that may be absent; present with another type is an error.
    pub fn param_int_opt(&self, name: &str) -> Result<Option<i64>> {
        match self.param(name) {
            None => Ok(None),
            Some(ParamValue::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(wrong_type(name, "integer", other)),
        }
    }

    /// A boolean parameter that may be absent; present with another type is an error.
    pub fn param_bool_opt(&self, name: &str) -> Result<Option<bool>> {
        match self.param(name) {
            None => Ok(None),
            Some(ParamValue::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(name, "boolean", other)),
        }
    }

    /// The record exactly as the host sent it.
    pub fn raw(&self) -> &wit::Context {
        &self.inner
    }
}

fn missing(name: &str) -> Error {
    Error::invalid_input(format!("missing parameter `{name}`"))
}

fn wrong_type(name: &str, expected: &str, got: &ParamValue) -> Error {
    let got = match got {
        ParamValue::Text(_) => "text",
        ParamValue::Integer(_) => "integer",
        ParamValue::Boolean(_) => "boolean",
    };
    Error::invalid_input(format!("parameter `{name}` must be {expected}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::proximity::recipe::types::{Resources, Target};

    fn ctx(params: Vec<(&str, ParamValue)>) -> Context {
        Context::new(wit::Context {
            deployment_id: "d1".into(),
            app_id: "web".into(),
            recipe_version: "0.1.0".into(),
            params: params.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
            resources: Resources { cores: 1, memory_mb: 512, swap_mb: 0, disk_gb: 4 },
            target: Target { backend: "sim".into(), node: None },
        })
    }

    #[test]
    fn typed_getters_name_the_parameter() {
        let c = ctx(vec![
            ("greeting", ParamValue::Text("hi".into())),
            ("port", ParamValue::Integer(8080)),
            ("big", ParamValue::Integer(70000)),
            ("tls", ParamValue::Boolean(true)),
        ]);
        assert_eq!(c.param_str("greeting").unwrap(), "hi");
        assert_eq!(c.param_int_as::<u16>("port").unwrap(), 8080);
        assert_eq!(c.param_bool("tls").unwrap(), true);
        assert_eq!(c.param_str_opt("absent").unwrap(), None);

        let missing = c.param_str("absent").unwrap_err();
        assert!(matches!(&missing, Error::InvalidInput(m) if m.contains("`absent`")));
        let wrong = c.param_int("greeting").unwrap_err();
        assert!(matches!(&wrong, Error::InvalidInput(m) if m.contains("`greeting`")));
        let range = c.param_int_as::<u16>("big").unwrap_err();
        assert!(matches!(&range, Error::InvalidInput(m) if m.contains("`big`")));
    }
}
