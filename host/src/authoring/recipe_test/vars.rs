//! `{{…}}` placeholders in expectations: filled in with the run's values
//! before comparing, and put back in place of secrets before showing.

/// The values one case's expectations may name.
#[derive(Debug, Default)]
pub struct Vars {
    /// `param.NAME`, `app-id`, `deployment-id`, `address`.
    values: Vec<(String, String)>,
    /// Names whose value cannot be known in this case, with the reason.
    missing: Vec<(String, String)>,
    /// (secret value, its placeholder), longest value first.
    secrets: Vec<(String, String)>,
}

impl Vars {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.push((name.to_string(), value.into()));
    }

    /// A value that does not exist in this case, and why.
    pub fn unavailable(&mut self, name: &str, why: &str) {
        self.missing.push((name.to_string(), why.to_string()));
    }

    /// A secret parameter: set, and shown as its placeholder.
    pub fn secret(&mut self, param: &str, value: &str) {
        self.set(&format!("param.{param}"), value);
        if !value.is_empty() {
            self.secrets.push((value.to_string(), format!("{{{{param.{param}}}}}")));
            self.secrets.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        }
    }

    /// `text` with every known placeholder filled in. A `{{…}}` that names
    /// none of the run's values is left as it is (config files have their own
    /// braces), except `{{param.…}}` of a parameter the recipe does not have.
    pub fn fill(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = after[..end].trim();
            if let Some((_, value)) = self.values.iter().find(|(n, _)| n == name) {
                out.push_str(value);
            } else if let Some((_, why)) = self.missing.iter().find(|(n, _)| n == name) {
                return Err(format!("`{{{{{name}}}}}` has no value here: {why}"));
            } else if let Some(param) = name.strip_prefix("param.") {
                return Err(format!("`{{{{{name}}}}}`: the recipe has no parameter `{param}`"));
            } else {
                out.push_str(&rest[start..start + 2 + end + 2]);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `text` as shown to the author: secret values (generated anew on every
    /// run) replaced by their placeholders.
    pub fn show(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (value, placeholder) in &self.secrets {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), placeholder);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_names_and_leaves_other_braces() {
        let mut vars = Vars::default();
        vars.set("app-id", "web-test");
        vars.secret("db-password", "s3cr3t");
        vars.unavailable("address", "no container is left");
        assert_eq!(vars.fill("{{app-id}}:{{ param.db-password }} {{.Name}}").unwrap(), "web-test:s3cr3t {{.Name}}");
        assert!(vars.fill("{{param.nope}}").unwrap_err().contains("no parameter `nope`"));
        assert!(vars.fill("{{address}}").unwrap_err().contains("no container"));
        assert_eq!(vars.fill("open {{ end").unwrap(), "open {{ end");
        assert_eq!(vars.show("pw=s3cr3t"), "pw={{param.db-password}}");
    }
}
