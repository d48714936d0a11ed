//! `registry.find` queries, as Wippy's registry finder reads them (en/lua/core/registry.md;
//! the finder in Wippy's runtime for what the page leaves open).
//!
//! A query is a map of keys to values, all of which an entry must match:
//! - `.kind`, `.ns`, `.name`, `.id`: the entry's kind, namespace, name or full id; the value
//!   may hold one `*` (`http.*`, `*.lua`, `app.*.v2`);
//! - `meta.field`: the meta field equals the value; a list value matches a list field that
//!   holds every one of its strings;
//! - `~meta.field` (regular expression), `*meta.field` (contains; for a list field, one
//!   item contains), `^meta.field` (starts with), `$meta.field` (ends with) on a string
//!   field.
//!
//! Other keys (a meta field without the `meta.` prefix, an invalid expression) are
//! ignored, each with a warning, as the runtime does.

use super::Entry;
use serde_json::Value as Json;

/// One condition of a query.
#[derive(Debug)]
enum Cond {
    /// A root field (`kind`, `ns`, `name`, `id`) against a pattern with at most one `*`.
    Root(&'static str, String),
    /// A meta field equal to a value (every string of a list).
    Equal(String, Json),
    /// A meta string field matching an expression.
    Regex(String, regex::Regex),
    /// A meta field (or an item of a list field) containing a text.
    Contains(String, String),
    /// A meta string field starting with a text.
    Prefix(String, String),
    /// A meta string field ending with a text.
    Suffix(String, String),
}

/// A parsed query.
#[derive(Debug, Default)]
pub struct Query {
    conds: Vec<Cond>,
    /// What was ignored, one line each.
    pub warnings: Vec<String>,
}

impl Query {
    /// Reads `pairs` (key, value) as a query.
    pub fn parse(pairs: Vec<(String, Json)>) -> Query {
        let mut q = Query::default();
        for (key, value) in pairs {
            if let Some(root) = key.strip_prefix('.') {
                let field = match root {
                    "kind" => "kind",
                    "ns" => "ns",
                    "name" => "name",
                    "id" => "id",
                    _ => {
                        q.warnings.push(format!(
                            "registry.find: unknown root field {key:?} (.kind, .ns, .name, .id) ignored"
                        ));
                        continue;
                    }
                };
                // a value that is not a string does not restrict (as the runtime's finder)
                if let Json::String(s) = value {
                    q.conds.push(Cond::Root(field, s));
                }
                continue;
            }
            let (op, rest) = match key.chars().next() {
                Some(c @ ('~' | '*' | '^' | '$')) => (Some(c), &key[1..]),
                _ => (None, key.as_str()),
            };
            let Some(field) = rest.strip_prefix("meta.") else {
                q.warnings.push(format!(
                    "registry.find: {key:?} ignored: meta fields need the `meta.` prefix (use {:?})",
                    format!("{}meta.{rest}", op.map(String::from).unwrap_or_default())
                ));
                continue;
            };
            let field = field.to_string();
            let text = |v: Json| match v {
                Json::String(s) => Some(s),
                _ => None,
            };
            let cond = match op {
                None => Some(Cond::Equal(field, value)),
                Some('~') => match text(value).map(|p| regex::Regex::new(&p)) {
                    Some(Ok(re)) => Some(Cond::Regex(field, re)),
                    Some(Err(e)) => {
                        q.warnings
                            .push(format!("registry.find: {key:?}: invalid pattern: {e}"));
                        None
                    }
                    None => None,
                },
                Some('*') => text(value).map(|t| Cond::Contains(field, t)),
                Some('^') => text(value).map(|t| Cond::Prefix(field, t)),
                Some(_) => text(value).map(|t| Cond::Suffix(field, t)),
            };
            q.conds.extend(cond);
        }
        q
    }

    /// Whether entry `e` meets every condition.
    pub fn matches(&self, e: &Entry) -> bool {
        self.conds.iter().all(|c| match c {
            Cond::Root(field, pattern) => {
                let id;
                let have = match *field {
                    "kind" => e.kind.as_str(),
                    "ns" => e.id.namespace.as_str(),
                    "name" => e.id.name.as_str(),
                    _ => {
                        id = e.id.to_string();
                        id.as_str()
                    }
                };
                glob(have, pattern)
            }
            Cond::Equal(field, want) => match e.meta.get(field) {
                None => false,
                Some(have) => equal(have, want),
            },
            Cond::Regex(field, re) => meta_str(e, field).is_some_and(|s| re.is_match(s)),
            Cond::Contains(field, t) => match e.meta.get(field) {
                Some(Json::String(s)) => s.contains(t.as_str()),
                Some(Json::Array(items)) => items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|s| s.contains(t.as_str()))),
                _ => false,
            },
            Cond::Prefix(field, t) => meta_str(e, field).is_some_and(|s| s.starts_with(t.as_str())),
            Cond::Suffix(field, t) => meta_str(e, field).is_some_and(|s| s.ends_with(t.as_str())),
        })
    }
}

fn meta_str<'a>(e: &'a Entry, field: &str) -> Option<&'a str> {
    e.meta.get(field).and_then(Json::as_str)
}

/// A meta value equal to the wanted one: a list of strings wants every one of them in a
/// list field; numbers compare by value (`1` and `1.0`); anything else compares exactly.
fn equal(have: &Json, want: &Json) -> bool {
    match (have, want) {
        (Json::Array(items), Json::Array(wanted)) if wanted.iter().all(Json::is_string) => {
            wanted.iter().all(|w| items.contains(w))
        }
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// `value` against `pattern`: equal, or with one `*` standing for any text (`*suffix`,
/// `prefix*`, `prefix*suffix`); a pattern with more than one `*` matches nothing.
pub fn glob(value: &str, pattern: &str) -> bool {
    let mut parts = pattern.splitn(3, '*');
    let (Some(prefix), suffix, more) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    match (suffix, more) {
        (None, _) => value == pattern,
        (Some(suffix), None) => {
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
        (Some(_), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_take_one_star() {
        assert!(glob("function.lua", "function.lua"));
        assert!(glob("function.lua", "function.*"));
        assert!(glob("function.lua", "*.lua"));
        assert!(glob("app.api.v2", "app.*.v2"));
        assert!(!glob("app.v2", "app.*.v2"));
        assert!(!glob("process.lua", "function.*"));
        assert!(!glob("a.b.c", "*.*"));
    }
}
