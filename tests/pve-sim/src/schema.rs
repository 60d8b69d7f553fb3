//! The PVE API schema (the `apidoc` tree) and request validation against it.
//!
//! The rules follow `PVE::JSONSchema` as closely as the simulator needs: the
//! same checks, and error texts worded like the ones PVE returns.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;
use serde_json::Value;

use crate::formats;

/// One node of the API tree.
#[derive(Debug)]
struct Node {
    /// The last path segment (`lxc`, `{vmid}`).
    segment: String,
    /// Full schema path, e.g. `/nodes/{node}/lxc`.
    path: String,
    children: Vec<Node>,
    /// Method → its `parameters` schema.
    methods: BTreeMap<String, Value>,
}

/// The loaded API schema.
#[derive(Debug)]
pub struct Schema {
    roots: Vec<Node>,
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

/// Why a request was refused before reaching a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// No such path, or no such method on it (PVE: 501 "Method '…' not implemented").
    NotImplemented(String),
    /// Parameter verification failed (PVE: 400), per parameter.
    Params(BTreeMap<String, String>),
}

/// A request that resolved and validated.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Schema path, e.g. `/nodes/{node}/lxc/{vmid}/config`.
    pub template: String,
    /// Path variables and parameters, merged.
    pub params: BTreeMap<String, String>,
}

impl Schema {
    pub fn load(path: &Path) -> anyhow::Result<Schema> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("reading the PVE API schema {}: {err}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|err| anyhow::anyhow!("parsing the PVE API schema {}: {err}", path.display()))?;
        Schema::from_value(&value)
    }

    pub fn from_value(value: &Value) -> anyhow::Result<Schema> {
        let list = value.as_array().ok_or_else(|| anyhow::anyhow!("the PVE API schema is not a JSON list"))?;
        let roots = list.iter().map(parse_node).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Schema { roots, regexes: Mutex::new(HashMap::new()) })
    }

    /// The `parameters` schema of a method at a schema path (for tests and tools).
    pub fn parameters(&self, method: &str, template: &str) -> Option<&Value> {
        let mut nodes = &self.roots;
        let mut found: Option<&Node> = None;
        for segment in template.split('/').filter(|s| !s.is_empty()) {
            let node = nodes.iter().find(|n| n.segment == segment)?;
            found = Some(node);
            nodes = &node.children;
        }
        found?.methods.get(method)
    }

    /// Find the node for a concrete path, literal segments first.
    fn resolve<'a>(&'a self, segments: &[&str]) -> Option<(&'a Node, Vec<(String, String)>)> {
        fn walk<'a>(nodes: &'a [Node], segments: &[&str], vars: &mut Vec<(String, String)>) -> Option<&'a Node> {
            let (first, rest) = segments.split_first()?;
            for node in nodes.iter().filter(|n| n.segment == *first) {
                if rest.is_empty() {
                    return Some(node);
                }
                if let Some(found) = walk(&node.children, rest, vars) {
                    return Some(found);
                }
            }
            for node in nodes.iter().filter(|n| n.segment.starts_with('{') && n.segment.ends_with('}')) {
                let name = node.segment[1..node.segment.len() - 1].to_string();
                vars.push((name, first.to_string()));
                if rest.is_empty() {
                    return Some(node);
                }
                if let Some(found) = walk(&node.children, rest, vars) {
                    return Some(found);
                }
                vars.pop();
            }
            None
        }
        let mut vars = Vec::new();
        let node = walk(&self.roots, segments, &mut vars)?;
        Some((node, vars))
    }

    /// Whether a concrete path names a node of the tree (whatever its methods).
    pub fn has_path(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.resolve(&segments).is_some()
    }

    /// Resolve a request (path relative to `/api2/json`, segments already
    /// percent-decoded) and validate its parameters.
    pub fn check(&self, method: &str, path: &str, params: &BTreeMap<String, String>) -> Result<Resolved, Rejection> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let not_implemented =
            || Rejection::NotImplemented(format!("Method '{method} /api2/json{path}' not implemented"));
        let (node, vars) = self.resolve(&segments).ok_or_else(not_implemented)?;
        let parameters = node.methods.get(method).ok_or_else(not_implemented)?;
        let mut merged = params.clone();
        for (name, value) in vars {
            merged.insert(name, value);
        }
        let mut errors = BTreeMap::new();
        self.check_object(parameters, &merged, "", &mut errors);
        if errors.is_empty() {
            Ok(Resolved { template: node.path.clone(), params: merged })
        } else {
            Err(Rejection::Params(errors))
        }
    }

    /// `check_object`: properties, required ones, `requires`, additional ones.
    fn check_object(
        &self,
        schema: &Value,
        values: &BTreeMap<String, String>,
        prefix: &str,
        errors: &mut BTreeMap<String, String>,
    ) {
        let empty = serde_json::Map::new();
        let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let additional = match schema.get("additionalProperties") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64() != Some(0),
            Some(Value::String(s)) => s != "0",
            Some(_) => true,
        };
        for (key, value) in values {
            let name = format!("{prefix}{key}");
            match property_schema(properties, key) {
                Some(prop) => {
                    self.check_prop(prop, value, &name, errors);
                    if let Some(required) = prop.get("requires").and_then(Value::as_str) {
                        if !values.contains_key(required) {
                            errors
                                .entry(format!("{prefix}{required}"))
                                .or_insert_with(|| format!("missing property - '{key}' requires this property"));
                        }
                    }
                }
                None if additional => {}
                None => {
                    errors.insert(
                        name,
                        "property is not defined in schema and the schema does not allow additional properties".into(),
                    );
                }
            }
        }
        for (key, prop) in properties {
            if key.ends_with("[n]") || prop.get("alias").is_some() || values.contains_key(key) {
                continue;
            }
            if !is_true(prop.get("optional")) {
                errors.insert(format!("{prefix}{key}"), "property is missing and it is not optional".into());
            }
        }
    }

    /// `check_prop`: one value against one property schema.
    fn check_prop(&self, prop: &Value, value: &str, name: &str, errors: &mut BTreeMap<String, String>) {
        if let Some(alternatives) = prop.get("oneOf").and_then(Value::as_array) {
            let fits = alternatives.iter().any(|alt| {
                let mut scratch = BTreeMap::new();
                self.check_prop(alt, value, name, &mut scratch);
                scratch.is_empty()
            });
            if !fits {
                errors.insert(name.to_string(), "value does not match any of the allowed schemas".into());
            }
            return;
        }
        let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
        if let Err(message) = self.check_scalar(prop, ty, value, name, errors) {
            errors.entry(name.to_string()).or_insert(message);
        }
    }

    fn check_scalar(
        &self,
        prop: &Value,
        ty: &str,
        value: &str,
        name: &str,
        errors: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        match ty {
            "boolean" if value != "0" && value != "1" => {
                return Err(format!("type check ('boolean') failed - got '{value}'"));
            }
            "integer" => {
                if !is_integer(value) {
                    return Err(format!("type check ('integer') failed - got '{value}'"));
                }
                check_range(prop, value)?;
            }
            "number" => {
                if !is_number(value) {
                    return Err(format!("type check ('number') failed - got '{value}'"));
                }
                check_range(prop, value)?;
            }
            "array" => {
                // Repeated form keys arrive joined with NUL.
                if let Some(items) = prop.get("items") {
                    for (i, item) in value.split('\0').enumerate() {
                        self.check_prop(items, item, &format!("{name}[{i}]"), errors);
                    }
                }
                return Ok(());
            }
            "object" => return Err(format!("type check ('object') failed - got '{value}'")),
            _ => {}
        }
        if let Some(options) = prop.get("enum").and_then(Value::as_array) {
            let names: Vec<String> = options.iter().map(value_text).collect();
            if !names.iter().any(|n| n == value) {
                return Err(format!("value '{value}' does not have a value in the enumeration '{}'", names.join(", ")));
            }
        }
        if ty == "string" {
            let length = value.chars().count();
            if let Some(max) = number(prop.get("maxLength")) {
                if length as f64 > max {
                    return Err(format!("value may only be {max} characters long"));
                }
            }
            if let Some(min) = number(prop.get("minLength")) {
                if (length as f64) < min {
                    return Err(format!("value must be at least {min} characters long"));
                }
            }
        }
        if let Some(pattern) = prop.get("pattern").and_then(Value::as_str) {
            if let Some(re) = self.regex(pattern) {
                if !re.is_match(value) {
                    return Err("value does not match the regex pattern".into());
                }
            }
        }
        match prop.get("format") {
            Some(Value::Object(format)) => {
                let mut sub = BTreeMap::new();
                self.check_property_string(format, value, name, &mut sub);
                if !sub.is_empty() {
                    errors.extend(sub);
                    return Err("invalid format - format error".into());
                }
            }
            Some(Value::String(format)) => formats::check(format, value)?,
            _ => {}
        }
        Ok(())
    }

    /// A property string, `key=value,…` with an optional bare default key.
    fn check_property_string(
        &self,
        format: &serde_json::Map<String, Value>,
        text: &str,
        name: &str,
        errors: &mut BTreeMap<String, String>,
    ) {
        let default_key = format.iter().find(|(_, p)| is_true(p.get("default_key"))).map(|(k, _)| k.clone());
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for part in text.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            let (mut key, value) = match part.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => (k.to_string(), v.to_string()),
                _ => match &default_key {
                    Some(default) => {
                        if values.contains_key(default) {
                            errors.insert(
                                name.to_string(),
                                format!("invalid format - duplicate key in comma-separated list property: {default}"),
                            );
                            return;
                        }
                        values.insert(default.clone(), part.to_string());
                        continue;
                    }
                    None => {
                        errors.insert(
                            name.to_string(),
                            "invalid format - value without key, but schema does not define a default key".into(),
                        );
                        return;
                    }
                },
            };
            if let Some(alias) = format.get(&key).and_then(|p| p.get("alias")).and_then(Value::as_str) {
                if let Some(key_alias) = format.get(&key).and_then(|p| p.get("keyAlias")).and_then(Value::as_str) {
                    values.insert(key_alias.to_string(), key.clone());
                }
                key = alias.to_string();
            }
            if values.contains_key(&key) {
                errors.insert(
                    name.to_string(),
                    format!("invalid format - duplicate key in comma-separated list property: {key}"),
                );
                return;
            }
            // Booleans inside property strings go through parse_boolean first.
            let value = match format.get(&key).and_then(|p| p.get("type")).and_then(Value::as_str) {
                Some("boolean") => parse_boolean(&value).map(str::to_string).unwrap_or(value),
                _ => value,
            };
            values.insert(key, value);
        }
        let object = serde_json::json!({ "properties": format, "additionalProperties": 0 });
        self.check_object(&object, &values, &format!("{name}."), errors);
    }

    fn regex(&self, pattern: &str) -> Option<Regex> {
        let mut cache = self.regexes.lock().unwrap();
        cache.entry(pattern.to_string()).or_insert_with(|| compile_pattern(pattern).ok()).clone()
    }
}

/// The schema for a parameter key: `net0` is the schema's `net[n]`.
fn property_schema<'a>(properties: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(prop) = properties.get(key) {
        return Some(prop);
    }
    let digits = key.len() - key.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == key.len() {
        return None;
    }
    let (prefix, index) = key.split_at(key.len() - digits);
    if index.len() > 1 && index.starts_with('0') {
        return None;
    }
    let index: usize = index.parse().ok()?;
    if index >= max_index(prefix) {
        return None;
    }
    properties.get(&format!("{prefix}[n]"))
}

/// How many `prefix[n]` keys PVE defines (the schema does not say).
fn max_index(prefix: &str) -> usize {
    match prefix {
        "net" => 32,
        "mp" | "unused" | "dev" => 256,
        _ => 1024,
    }
}

/// PVE's `parse_boolean`, for property strings.
pub fn parse_boolean(value: &str) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    match lower.as_str() {
        "1" | "true" | "yes" | "on" => Some("1"),
        "0" | "false" | "no" | "off" => Some("0"),
        _ => None,
    }
}

/// A schema pattern as an anchored Rust regex (PVE matches `^pattern$`).
fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    // Unicode `\w{0,256}` needs more room than the default limit.
    regex::RegexBuilder::new(&format!("^(?:{})$", perl_to_rust_regex(pattern))).size_limit(1 << 28).build()
}

/// Perl regex syntax in the schema → Rust `regex` syntax.
fn perl_to_rust_regex(pattern: &str) -> String {
    pattern
        .replace("(?^:", "(?:")
        .replace("(?^i:", "(?i:")
        .replace("(?>", "(?:")
        .replace("{,", "{0,")
        .replace("\\0", "\\x00")
        .replace("\\Z", "\\z")
}

fn is_integer(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_number(value: &str) -> bool {
    static NUMBER: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    NUMBER.get_or_init(|| Regex::new(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$").unwrap()).is_match(value)
}

fn check_range(prop: &Value, value: &str) -> Result<(), String> {
    let Ok(v) = value.parse::<f64>() else { return Ok(()) };
    if let Some(min) = number(prop.get("minimum")).or_else(|| number(prop.get("min"))) {
        if v < min {
            return Err(format!("value must have a minimum value of {}", fmt_num(min)));
        }
    }
    if let Some(max) = number(prop.get("maximum")).or_else(|| number(prop.get("max"))) {
        if v > max {
            return Err(format!("value must have a maximum value of {}", fmt_num(max)));
        }
    }
    Ok(())
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Numbers in the schema are sometimes strings (`"minimum": "0"`).
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) != 0.0,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s != "0" && !s.is_empty(),
        _ => false,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_node(value: &Value) -> anyhow::Result<Node> {
    let path = value.get("path").and_then(Value::as_str).ok_or_else(|| anyhow::anyhow!("schema node without path"))?;
    let segment = path.rsplit('/').next().unwrap_or("").to_string();
    let mut methods = BTreeMap::new();
    if let Some(info) = value.get("info").and_then(Value::as_object) {
        for (method, spec) in info {
            let parameters = spec.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({}));
            methods.insert(method.clone(), parameters);
        }
    }
    let children = match value.get("children").and_then(Value::as_array) {
        Some(list) => list.iter().map(parse_node).collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(Node { segment, path: path.to_string(), children, methods })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(p)) = map.get("pattern") {
                    out.push(p.clone());
                }
                map.values().for_each(|v| patterns(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| patterns(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_pattern_compiles() {
        let text = std::fs::read_to_string(crate::DEFAULT_SCHEMA).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let mut all = Vec::new();
        patterns(&value, &mut all);
        assert!(all.len() > 100);
        let broken: Vec<String> =
            all.iter().filter_map(|p| compile_pattern(p).err().map(|e| format!("{p}: {e}"))).collect();
        assert!(broken.is_empty(), "patterns that do not compile: {broken:?}");
    }

    #[test]
    fn perl_syntax_is_translated() {
        assert_eq!(perl_to_rust_regex(r"(?^:\w+=[^\x00]*)(?:\0\w+)*"), r"(?:\w+=[^\x00]*)(?:\x00\w+)*");
        let schema = Schema::load(Path::new(crate::DEFAULT_SCHEMA)).unwrap();
        let env = BTreeMap::from([
            ("vmid".to_string(), "100".to_string()),
            ("ostemplate".to_string(), "local:vztmpl/x.tar.zst".to_string()),
            ("env".to_string(), "A=1\0B=two".to_string()),
        ]);
        assert!(schema.check("POST", "/nodes/pve1/lxc", &env).is_ok());
    }

    #[test]
    fn indexed_keys_map_to_their_schema_entry() {
        let props = serde_json::json!({ "net[n]": { "type": "string" }, "mp[n]": {}, "memory": {} });
        let props = props.as_object().unwrap();
        assert!(property_schema(props, "net0").is_some());
        assert!(property_schema(props, "net31").is_some());
        assert!(property_schema(props, "net32").is_none());
        assert!(property_schema(props, "net01").is_none());
        assert!(property_schema(props, "mp255").is_some());
        assert!(property_schema(props, "memory").is_some());
        assert!(property_schema(props, "memory1").is_none());
    }
}
