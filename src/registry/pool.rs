//! Worker pool settings of function entries (`pool:`), checked at load time.
//!
//! ```yaml
//! pool: {type: static, size: 4, buffer: 256}   # or inline | lazy | adaptive
//! ```
//! No `pool` at all is the default pool (up to 100 workers); a `pool` without `type` gets
//! the type its other fields imply, as Wippy's runtime chooses it.

/// How a function's calls get workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// A new instance per call, run on the caller; no bound.
    Inline,
    /// Instances created on demand up to `max_size`, none kept idle.
    Lazy,
    /// A fixed set of `size` workers, kept between calls.
    Static,
    /// Between 1 and `max_size` workers, grown with load, shrunk when idle.
    Adaptive,
    /// No `pool` field: adaptive up to 100 workers.
    Default,
}

/// A parsed `pool` field.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// The pool type.
    pub kind: PoolKind,
    /// At most this many calls run at once (unbounded for inline).
    pub max_size: usize,
    /// Callers that may wait for a worker before the queue counts as full.
    pub buffer: usize,
    /// Idle workers older than this are let go (adaptive: down to one; the default pool:
    /// all). None: kept (static).
    pub idle_timeout: Option<std::time::Duration>,
    /// `overflow: cluster`: in a cluster, a call that finds every worker busy goes to
    /// another node that runs the function (if one does) instead of waiting here.
    pub overflow: bool,
}

/// How long an adaptive pool keeps an idle worker (beyond its last one) by default.
pub const ADAPTIVE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the default pool keeps an idle worker.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The pool types users may write.
pub const POOL_TYPES: &[&str] = &["inline", "lazy", "static", "adaptive"];

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec {
            kind: PoolKind::Default,
            max_size: 100,
            buffer: 100 * 64,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            overflow: false,
        }
    }
}

/// The size of a lazy pool chosen for a `pool` without `type` or `max_size` (Wippy's
/// default pool size).
pub const AUTO_LAZY_MAX: usize = 100;

/// The largest pool size or buffer accepted (a bound well past any real pool, and below
/// what the pool's semaphore can count).
pub const MAX_POOL_SIZE: usize = 1_000_000;

fn positive(
    m: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<usize>, (String, String)> {
    super::fields::positive(m.get(key), MAX_POOL_SIZE).map_err(|msg| (format!("pool.{key}"), msg))
}

impl PoolSpec {
    /// Parses a `pool` mapping; the error is (field, message).
    pub fn from_json(v: &serde_json::Value) -> Result<PoolSpec, (String, String)> {
        let m = v.as_object().ok_or_else(|| {
            (
                "pool".to_string(),
                format!("expected a mapping like {{type: static, size: 4}}, found {v}"),
            )
        })?;
        let ty = match m.get("type") {
            Some(serde_json::Value::String(s)) => super::fields::one_of("pool type", s, POOL_TYPES)
                .map_err(|msg| ("pool.type".to_string(), msg))?,
            // no type: chosen from the other fields as Wippy's runtime does (the tip in
            // en/concepts/functions.md): `workers` makes a static pool; no `size`, or a
            // `max_size`, a lazy one (up to 100 by default); a lone `size` an inline one
            None | Some(serde_json::Value::Null) => {
                if positive(m, "workers")?.is_some() {
                    "static"
                } else if m.get("size").is_none() || m.get("max_size").is_some() {
                    "lazy"
                } else {
                    "inline"
                }
            }
            Some(other) => {
                return Err((
                    "pool.type".into(),
                    format!("expected a string, found {other}"),
                ))
            }
        };
        let typed = m.get("type").is_some_and(|t| !t.is_null());
        let spec = match ty {
            "inline" => PoolSpec {
                kind: PoolKind::Inline,
                max_size: usize::MAX,
                buffer: 0,
                idle_timeout: None,
                overflow: false,
            },
            "lazy" => {
                let default = if typed { 16 } else { AUTO_LAZY_MAX };
                let max = positive(m, "max_size")?.unwrap_or(default);
                PoolSpec {
                    kind: PoolKind::Lazy,
                    max_size: max,
                    buffer: positive(m, "buffer")?.unwrap_or(max.saturating_mul(64)),
                    idle_timeout: None,
                    overflow: false,
                }
            }
            "static" => {
                let size = match positive(m, "size")? {
                    Some(s) => s,
                    None => positive(m, "workers")?.unwrap_or(4),
                };
                PoolSpec {
                    kind: PoolKind::Static,
                    max_size: size,
                    buffer: positive(m, "buffer")?.unwrap_or(size.saturating_mul(64)),
                    idle_timeout: None,
                    overflow: false,
                }
            }
            "adaptive" => {
                let max = positive(m, "max_size")?.unwrap_or(16);
                PoolSpec {
                    kind: PoolKind::Adaptive,
                    max_size: max,
                    buffer: positive(m, "buffer")?.unwrap_or(max.saturating_mul(64)),
                    idle_timeout: Some(
                        super::fields::duration(m.get("idle_timeout"))
                            .map_err(|e| ("pool.idle_timeout".to_string(), e))?
                            .unwrap_or(ADAPTIVE_IDLE_TIMEOUT),
                    ),
                    overflow: false,
                }
            }
            _ => unreachable!("one of POOL_TYPES"),
        };
        let overflow = match m.get("overflow") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::String(s)) if s == "cluster" => true,
            Some(serde_json::Value::String(s)) if s == "none" => false,
            Some(other) => {
                return Err((
                    "pool.overflow".into(),
                    format!("expected cluster or none, found {other}"),
                ))
            }
        };
        Ok(PoolSpec { overflow, ..spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_type_with_defaults() {
        let p = |v| PoolSpec::from_json(&v).unwrap();
        assert_eq!(p(json!({"type": "lazy"})).max_size, 16);
        let s = p(json!({"type": "static", "workers": 3}));
        assert_eq!((s.kind, s.max_size, s.buffer), (PoolKind::Static, 3, 192));
        assert_eq!(
            p(json!({"type": "static", "size": 2, "buffer": 5})).buffer,
            5
        );
        assert_eq!(p(json!({"type": "adaptive", "max_size": 8})).max_size, 8);
        assert_eq!(
            p(json!({"type": "adaptive"})).idle_timeout,
            Some(ADAPTIVE_IDLE_TIMEOUT)
        );
        assert_eq!(
            p(json!({"type": "adaptive", "idle_timeout": "250ms"})).idle_timeout,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(p(json!({"type": "inline"})).kind, PoolKind::Inline);
        assert!(p(json!({"type": "static", "overflow": "cluster"})).overflow);
        assert!(!p(json!({"type": "static"})).overflow);
        // no type (en/concepts/functions.md): workers -> static, max_size or nothing ->
        // lazy, a lone size -> inline
        let w = p(json!({"workers": 8, "buffer": 512}));
        assert_eq!((w.kind, w.max_size, w.buffer), (PoolKind::Static, 8, 512));
        let l = p(json!({"max_size": 32}));
        assert_eq!((l.kind, l.max_size), (PoolKind::Lazy, 32));
        assert_eq!(p(json!({})).max_size, AUTO_LAZY_MAX);
        assert_eq!(p(json!({"size": 3})).kind, PoolKind::Inline);
    }

    #[test]
    fn refuses_bad_pools_naming_the_field() {
        let e = |v| PoolSpec::from_json(&v).unwrap_err();
        assert_eq!(e(json!({"type": "statik"})).0, "pool.type");
        assert_eq!(
            e(json!({"type": "static", "overflow": "yes"})),
            (
                "pool.overflow".to_string(),
                "expected cluster or none, found \"yes\"".to_string()
            )
        );
        assert!(e(json!({"type": "statik"}))
            .1
            .contains("did you mean static?"));
        assert_eq!(e(json!({"type": "lazy", "max_size": 0})).0, "pool.max_size");
        assert_eq!(e(json!({"workers": "two"})).0, "pool.workers");
        assert_eq!(e(json!("static")).0, "pool");
        let idle = e(json!({"type": "adaptive", "idle_timeout": "soon"}));
        assert_eq!(idle.0, "pool.idle_timeout");
        assert!(idle.1.contains("invalid duration \"soon\""), "{idle:?}");
        // found by tests/properties.rs: a huge size used to overflow the default buffer
        let huge = e(json!({"type": "static", "size": 9_223_372_036_854_775_807_i64}));
        assert_eq!(huge.0, "pool.size");
        assert!(huge.1.contains("must be at most 1000000"), "{huge:?}");
        assert_eq!(
            e(json!({"type": "lazy", "max_size": 288_230_376_151_711_744_i64})).0,
            "pool.max_size"
        );
        assert!(e(json!({"type": "lazy", "max_size": -3}))
            .1
            .contains("positive"));
    }
}
