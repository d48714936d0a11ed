//! Wippy's security policies (en/system/security.md), without Lua: a `security.policy`
//! entry is parsed once at load into a [`Policy`], and [`evaluate`] decides a request (an
//! actor, an action, a resource and the resource's metadata) against the policies of a
//! scope: any deny denies, an allow with no deny allows, nothing that applies is
//! undefined.
//!
//! Actions and resources are patterns: `*` alone is everything, and a `*` inside a pattern
//! stands for any text (`"*.read"`, `"document:*"`). Conditions compare a field of the
//! request (`actor.id`, `actor.meta.*`, `action`, `resource`, `meta.*`) with a value or
//! with another field (`value_from`), all of them true for the policy to apply.

use serde_json::Value as Json;

/// What a policy does when it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// The outcome of evaluating a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A policy allowed it and none denied it.
    Allow,
    /// A policy denied it.
    Deny,
    /// No policy applied.
    Undefined,
}

impl Decision {
    /// `"allow"`, `"deny"` or `"undefined"`, as `scope:evaluate` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Undefined => "undefined",
        }
    }
}

/// A condition's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Lte,
    Gte,
    In,
    Nin,
    Exists,
    Nexists,
    Contains,
    Ncontains,
    Matches,
    Nmatches,
}

const OPS: &[(&str, Op)] = &[
    ("eq", Op::Eq),
    ("ne", Op::Ne),
    ("lt", Op::Lt),
    ("gt", Op::Gt),
    ("lte", Op::Lte),
    ("gte", Op::Gte),
    ("in", Op::In),
    ("nin", Op::Nin),
    ("exists", Op::Exists),
    ("nexists", Op::Nexists),
    ("contains", Op::Contains),
    ("ncontains", Op::Ncontains),
    ("matches", Op::Matches),
    ("nmatches", Op::Nmatches),
];

/// The value a condition compares with.
#[derive(Clone, Debug)]
enum Operand {
    Value(Json),
    From(String),
    Regex(regex::Regex),
}

/// One condition of a policy.
#[derive(Clone, Debug)]
struct Condition {
    field: String,
    op: Op,
    operand: Operand,
}

/// The expression of a `security.policy.expr` entry, parsed once.
type Expression = evalexpr::Node<evalexpr::DefaultNumericTypes>;

/// A `security.policy` (or `security.policy.expr`) entry, parsed.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The entry's id.
    pub id: String,
    /// Action patterns.
    actions: Vec<String>,
    /// Resource patterns.
    resources: Vec<String>,
    /// Allow or deny.
    pub effect: Effect,
    conditions: Vec<Condition>,
    /// A `security.policy.expr`'s expression: it applies where the expression is true.
    expression: Option<Expression>,
    /// The groups it belongs to (`groups:`), for `security.named_scope`.
    pub groups: Vec<String>,
}

/// Who asks, as a request carries it.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    /// Its id (`user:123`; a process's pid).
    pub id: String,
    /// Its metadata (an object, or null).
    pub meta: Json,
}

fn patterns(v: Option<&Json>, what: &str) -> Result<Vec<String>, String> {
    match v {
        Some(Json::String(s)) => Ok(vec![s.clone()]),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("policy.{what}: expected strings, found {i}"))
            })
            .collect(),
        None => Err(format!(
            "policy.{what} is missing (a pattern, \"*\", or a list)"
        )),
        Some(other) => Err(format!(
            "policy.{what}: expected a pattern or a list, found {other}"
        )),
    }
}

impl Policy {
    /// Parses a `security.policy` entry's mapping (`policy: {actions, resources, effect,
    /// conditions}`, `groups`). The error names the field.
    pub fn parse(id: &str, entry: &Json) -> Result<Policy, String> {
        let p = entry
            .get("policy")
            .ok_or("field policy is missing (actions, resources, effect)")?;
        let effect = match p.get("effect").and_then(Json::as_str) {
            Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            Some(other) => return Err(format!("policy.effect: {other:?} is not allow or deny")),
            None => return Err("policy.effect is missing (allow or deny)".into()),
        };
        let mut conditions = Vec::new();
        if let Some(cs) = p.get("conditions") {
            let cs = cs.as_array().ok_or("policy.conditions: expected a list")?;
            for (i, c) in cs.iter().enumerate() {
                let at = format!("policy.conditions[{i}]");
                let field = c
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("{at}.field is missing"))?
                    .to_string();
                let op_name = c
                    .get("operator")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("{at}.operator is missing"))?;
                let op = OPS
                    .iter()
                    .find(|(n, _)| *n == op_name)
                    .map(|(_, o)| *o)
                    .ok_or_else(|| {
                        let known: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
                        format!(
                            "{at}.operator: unknown {op_name:?} (one of {})",
                            known.join(", ")
                        )
                    })?;
                let operand = match (c.get("value"), c.get("value_from").and_then(Json::as_str)) {
                    (_, Some(from)) => Operand::From(from.to_string()),
                    (Some(Json::String(re)), None) if matches!(op, Op::Matches | Op::Nmatches) => {
                        Operand::Regex(
                            regex::Regex::new(re).map_err(|e| format!("{at}.value: {e}"))?,
                        )
                    }
                    (Some(v), None) => Operand::Value(v.clone()),
                    (None, None) if matches!(op, Op::Exists | Op::Nexists) => {
                        Operand::Value(Json::Bool(true))
                    }
                    (None, None) => return Err(format!("{at}: value or value_from is missing")),
                };
                conditions.push(Condition { field, op, operand });
            }
        }
        let groups = match entry.get("groups") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(g)) => g
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or("groups: expected names")
                })
                .collect::<Result<_, _>>()?,
            Some(Json::String(g)) => vec![g.clone()],
            Some(other) => return Err(format!("groups: expected a list of names, found {other}")),
        };
        Ok(Policy {
            id: id.to_string(),
            actions: patterns(p.get("actions"), "actions")?,
            resources: patterns(p.get("resources"), "resources")?,
            effect,
            conditions,
            expression: None,
            groups,
        })
    }

    /// Parses a `security.policy.expr` entry: a policy whose `policy.expression` (actor,
    /// action, resource, meta: `actor.meta.role == "editor" && action == "write"`) must
    /// be true for it to apply (en/system/security.md, "Expression-Based Policy").
    pub fn parse_expr(id: &str, entry: &Json) -> Result<Policy, String> {
        let text = entry
            .get("policy")
            .and_then(|p| p.get("expression"))
            .and_then(Json::as_str)
            .ok_or("policy.expression is missing (a boolean expression)")?;
        let tree = evalexpr::build_operator_tree::<evalexpr::DefaultNumericTypes>(text)
            .map_err(|e| format!("policy.expression: {e}"))?;
        let mut policy = Policy::parse(id, entry)?;
        policy.expression = Some(tree);
        Ok(policy)
    }

    /// What this policy says of a request: its effect if it applies, None if not.
    pub fn decide(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        meta: &Json,
    ) -> Option<Effect> {
        let applies = self.actions.iter().any(|p| matches(p, action))
            && self.resources.iter().any(|p| matches(p, resource))
            && self
                .conditions
                .iter()
                .all(|c| c.holds(actor, action, resource, meta))
            && self.expression.as_ref().is_none_or(|e| {
                // an expression that cannot be evaluated fails closed: a deny applies,
                // an allow does not
                expression_holds(e, actor, action, resource, meta)
                    .unwrap_or(self.effect == Effect::Deny)
            });
        applies.then_some(self.effect)
    }
}

/// A field's value as the expression language has it (null or missing: empty).
fn expr_value(v: Option<Json>) -> evalexpr::Value<evalexpr::DefaultNumericTypes> {
    use evalexpr::Value as V;
    match v {
        Some(Json::Bool(b)) => V::Boolean(b),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Json::String(s)) => V::String(s),
        Some(Json::Array(items)) => {
            V::Tuple(items.into_iter().map(|i| expr_value(Some(i))).collect())
        }
        Some(Json::Object(_)) | Some(Json::Null) | None => V::Empty,
    }
}

/// Evaluates a policy's expression for a request: each name in it (`actor.id`,
/// `actor.meta.role`, `action`, `resource`, `meta.owner`) is that field of the request,
/// empty when the request has none. None when it does not give a boolean.
fn expression_holds(
    e: &Expression,
    actor: &Actor,
    action: &str,
    resource: &str,
    meta: &Json,
) -> Option<bool> {
    use evalexpr::ContextWithMutableVariables;
    let mut ctx = evalexpr::HashMapContext::<evalexpr::DefaultNumericTypes>::new();
    for name in e.iter_variable_identifiers() {
        let v = expr_value(field(name, actor, action, resource, meta));
        ctx.set_value(name.to_string(), v).ok()?;
    }
    e.eval_boolean_with_context(&ctx).ok()
}

/// Whether `text` fits `pattern` (`*` is any text).
pub fn matches(pattern: &str, text: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The value of a field path of the request, if it has one.
fn field(path: &str, actor: &Actor, action: &str, resource: &str, meta: &Json) -> Option<Json> {
    let walk = |root: &Json, rest: &str| -> Option<Json> {
        let mut at = root;
        for key in rest.split('.').filter(|k| !k.is_empty()) {
            at = at.get(key)?;
        }
        Some(at.clone())
    };
    match path {
        "actor.id" => Some(Json::String(actor.id.clone())),
        "action" => Some(Json::String(action.to_string())),
        "resource" => Some(Json::String(resource.to_string())),
        "actor.meta" => Some(actor.meta.clone()),
        "meta" => Some(meta.clone()),
        p => {
            if let Some(rest) = p.strip_prefix("actor.meta.") {
                walk(&actor.meta, rest)
            } else if let Some(rest) = p.strip_prefix("meta.") {
                walk(meta, rest)
            } else {
                None
            }
        }
    }
    .filter(|v| !v.is_null())
}

fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Equality as a policy reads it: numbers by value (`3` equals `3.0`), the rest as JSON.
fn same(a: &Json, b: &Json) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) if a.is_number() || b.is_number() => x == y,
        _ => a == b,
    }
}

impl Condition {
    fn holds(&self, actor: &Actor, action: &str, resource: &str, meta: &Json) -> bool {
        let got = field(&self.field, actor, action, resource, meta);
        let want = match &self.operand {
            Operand::Value(v) => Some(v.clone()),
            Operand::From(path) => field(path, actor, action, resource, meta),
            Operand::Regex(_) => None,
        };
        let cmp = |f: fn(f64, f64) -> bool| match (
            got.as_ref().and_then(number),
            want.as_ref().and_then(number),
        ) {
            (Some(a), Some(b)) => f(a, b),
            _ => false,
        };
        let member = || match (&got, &want) {
            (Some(g), Some(Json::Array(items))) => items.iter().any(|i| same(g, i)),
            _ => false,
        };
        let contains = || match (&got, &want) {
            (Some(Json::String(g)), Some(w)) => g.contains(&text(w)),
            (Some(Json::Array(items)), Some(w)) => items.iter().any(|i| same(i, w)),
            _ => false,
        };
        let regex = || match (&got, &self.operand) {
            (Some(g), Operand::Regex(re)) => re.is_match(&text(g)),
            (Some(g), _) => want
                .as_ref()
                .and_then(|w| regex::Regex::new(&text(w)).ok())
                .is_some_and(|re| re.is_match(&text(g))),
            _ => false,
        };
        let exists = got.is_some();
        let truthy = want.as_ref().is_none_or(|w| *w != Json::Bool(false));
        match self.op {
            Op::Eq => matches!((&got, &want), (Some(g), Some(w)) if same(g, w)),
            Op::Ne => !matches!((&got, &want), (Some(g), Some(w)) if same(g, w)),
            Op::Lt => cmp(|a, b| a < b),
            Op::Gt => cmp(|a, b| a > b),
            Op::Lte => cmp(|a, b| a <= b),
            Op::Gte => cmp(|a, b| a >= b),
            Op::In => member(),
            Op::Nin => !member(),
            Op::Exists => exists == truthy,
            Op::Nexists => exists != truthy,
            Op::Contains => contains(),
            Op::Ncontains => !contains(),
            Op::Matches => regex(),
            Op::Nmatches => !regex(),
        }
    }
}

/// Evaluates a request against `policies` (en/system/security.md, "Evaluation Flow").
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    actor: &Actor,
    action: &str,
    resource: &str,
    meta: &Json,
) -> Decision {
    let mut allowed = false;
    for p in policies {
        match p.decide(actor, action, resource, meta) {
            Some(Effect::Deny) => return Decision::Deny,
            Some(Effect::Allow) => allowed = true,
            None => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::Undefined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Json) -> Policy {
        Policy::parse("app:p", &v).unwrap()
    }

    #[test]
    fn expressions_decide_with_the_request_fields() {
        let p = Policy::parse_expr("app:e", &json!({"policy": {"actions": ["read", "write"],
            "resources": "file:*", "effect": "allow",
            "expression": "(actor.meta.role == \"editor\" && action == \"write\") || (action == \"read\" && meta.public == true) || actor.id == meta.owner"}})).unwrap();
        let editor = Actor {
            id: "user:1".into(),
            meta: json!({"role": "editor"}),
        };
        let reader = Actor {
            id: "user:2".into(),
            meta: json!({}),
        };
        let d = |a: &Actor, act: &str, m: Json| evaluate([&p], a, act, "file:1", &m);
        assert_eq!(d(&editor, "write", json!({})), Decision::Allow);
        assert_eq!(d(&reader, "write", json!({})), Decision::Undefined);
        assert_eq!(d(&reader, "read", json!({"public": true})), Decision::Allow);
        assert_eq!(
            d(&reader, "write", json!({"owner": "user:2"})),
            Decision::Allow
        );
        assert!(Policy::parse_expr(
            "x",
            &json!({"policy": {"actions": "*", "resources": "*",
            "effect": "allow", "expression": "((("}})
        )
        .unwrap_err()
        .starts_with("policy.expression"));
    }

    #[test]
    fn patterns_match_as_globs() {
        assert!(matches("*", "anything"));
        assert!(matches("*.read", "users.read"));
        assert!(matches("document:*", "document:123"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("document:*", "file:1"));
        assert!(!matches("read", "reader"));
    }

    #[test]
    fn conditions_and_effects_decide() {
        let admin = policy(
            json!({"policy": {"actions": "*", "resources": "*", "effect": "allow",
            "conditions": [{"field": "actor.meta.role", "operator": "eq", "value": "admin"}]}}),
        );
        let owner = policy(
            json!({"policy": {"actions": ["read", "write"], "resources": "document:*",
            "effect": "allow", "conditions": [{"field": "meta.owner", "operator": "eq", "value_from": "actor.id"}]}}),
        );
        let secret = policy(
            json!({"policy": {"actions": "*", "resources": "document:*", "effect": "deny",
            "conditions": [{"field": "meta.classification", "operator": "eq", "value": "confidential"},
                           {"field": "actor.meta.clearance", "operator": "lt", "value": 3}]}}),
        );
        let all = [admin, owner, secret];
        let alice = Actor {
            id: "user:1".into(),
            meta: json!({"role": "user", "clearance": 1}),
        };
        let root = Actor {
            id: "user:0".into(),
            meta: json!({"role": "admin", "clearance": 5}),
        };
        let mine = json!({"owner": "user:1"});
        assert_eq!(
            evaluate(&all, &alice, "read", "document:9", &mine),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&all, &alice, "delete", "document:9", &mine),
            Decision::Undefined
        );
        let classified = json!({"owner": "user:1", "classification": "confidential"});
        assert_eq!(
            evaluate(&all, &alice, "read", "document:9", &classified),
            Decision::Deny
        );
        assert_eq!(
            evaluate(&all, &root, "delete", "document:9", &classified),
            Decision::Allow
        );
        assert!(Policy::parse(
            "x",
            &json!({"policy": {"actions": "*", "resources": "*", "effect": "maybe"}})
        )
        .is_err());
        assert!(Policy::parse(
            "x",
            &json!({"policy": {"actions": "*", "resources": "*", "effect": "allow",
            "conditions": [{"field": "a", "operator": "like", "value": 1}]}})
        )
        .unwrap_err()
        .contains("unknown \"like\""));
    }
}
