//! Filling `{{name}}` placeholders in a recipe's asset files.

use crate::error::{Error, Result};

/// Replace every `{{name}}` in `template` with its value from `values`.
///
/// One pass, so a value that itself contains `{{…}}` is never expanded. An
/// unknown placeholder, or a value that no placeholder uses, is an error:
/// either means the asset and the code drifted apart.
pub fn render(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| Error::invalid_input("template has an unclosed `{{`"))?;
        let name = after[..end].trim();
        let index = values
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| Error::invalid_input(format!("template placeholder `{name}` has no value")))?;
        used[index] = true;
        out.push_str(values[index].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(index) = used.iter().position(|u| !u) {
        return Err(Error::invalid_input(format!("template has no placeholder `{}`", values[index].0)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_once() {
        let out = render("a={{a}} b={{ b }} a={{a}}", &[("a", "{{b}}"), ("b", "2")]).unwrap();
        assert_eq!(out, "a={{b}} b=2 a={{b}}");
    }

    #[test]
    fn reports_drift() {
        assert!(render("{{missing}}", &[]).is_err());
        assert!(render("plain", &[("unused", "x")]).is_err());
        assert!(render("{{open", &[]).is_err());
    }
}
