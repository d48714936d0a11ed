//! The settings of `process.service` and `supervisor` entries, parsed from their YAML and
//! checked against the registry. Every problem is a load error naming file, entry and
//! field; all problems of one registry are returned together.

use crate::registry::{fields, Entry, EntrySpec, Id, LoadError, Registry};
use crate::value::{self, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Restart policy of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    /// Delay before the first restart.
    pub initial_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Each failure multiplies the delay by this (>= 1).
    pub backoff_factor: f64,
    /// Random spread of each delay, 0..1 (0.1 = +/- 10%).
    pub jitter: f64,
    /// Failures before the service stays Failed; 0 = retry forever.
    pub max_attempts: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(90),
            backoff_factor: 2.0,
            jitter: 0.1,
            max_attempts: 0,
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let f = self
            .backoff_factor
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let d = self.initial_delay.as_secs_f64() * f;
        Duration::from_secs_f64(d.min(self.max_delay.as_secs_f64()))
    }

    /// The delay before restart number `attempt`, with jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        Duration::from_secs_f64((base * (1.0 + spread)).max(0.0))
    }
}

/// What a service runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A process entry.
    Process(Id),
    /// A `supervisor` tree.
    Tree(Id),
}

/// A parsed `process.service`.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// The service id.
    pub id: Id,
    /// What it runs.
    pub target: Target,
    /// Host (None: the default host).
    pub host: Option<Id>,
    /// Spawn arguments.
    pub args: Vec<Value>,
    /// Started with the runtime.
    pub auto_start: bool,
    /// Time the process has to come up.
    pub start_timeout: Duration,
    /// Time between CANCEL and terminate on stop.
    pub stop_timeout: Duration,
    /// Running this long resets the restart counter.
    pub stable_threshold: Duration,
    /// Services that start before this one and stop after it.
    pub requires: Vec<Id>,
    /// `lifecycle.restart_on_change` (default true): when the registry changes the code it
    /// runs (its process entry, a library that entry imports, its supervisor entry), the
    /// running service is restarted on the new code.
    pub restart_on_change: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// `placement: {node: NAME}`: in a cluster, only node NAME runs it (None: every node
    /// that loads the app).
    pub placement: Option<String>,
    /// `lifecycle.security` (en/system/security.md, "Service-Level Security"): the actor
    /// and scope its process runs with (None: its own pid, no scope).
    pub security: Option<std::sync::Arc<crate::functions::CallContext>>,
}

/// OTP restart strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only the child that ended.
    OneForOne,
    /// Restart every child.
    OneForAll,
    /// Restart the child and those started after it.
    RestForOne,
    /// Children made at run time from one template (`supervisor.start_child(tree,
    /// args...)`), each restarted on its own and stopped without order.
    SimpleOneForOne,
}

impl Strategy {
    /// The name as written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
            Strategy::SimpleOneForOne => "simple_one_for_one",
        }
    }
}

/// OTP's `auto_shutdown`: when the ending of significant children stops the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoShutdown {
    /// Never (significant children are refused).
    Never,
    /// When any significant child ended by itself.
    AnySignificant,
    /// When every significant child ended by itself.
    AllSignificant,
}

/// When a process child counts as started (OTP: its `init` returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// When it first waits for a message (its inbox, its events, a topic listener; a sleep
    /// or a call does not count): its code up to there is its init.
    FirstWait,
    /// When its code calls `supervisor.started()` (or `supervisor.ignore()`).
    Ack,
}

/// OTP child restart types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartType {
    /// Always restarted.
    Permanent,
    /// Restarted after an abnormal exit only.
    Transient,
    /// Never restarted.
    Temporary,
}

/// What a child of a tree is.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildKind {
    /// A process entry.
    Process(Id),
    /// A nested supervisor entry.
    Tree(Id),
}

/// A `shutdown` of `infinity`: wait for the child however long it takes.
pub const INFINITY: Duration = Duration::MAX;

/// One child of a `supervisor`.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// The child's id inside the tree.
    pub id: String,
    /// What it runs.
    pub kind: ChildKind,
    /// When it is restarted.
    pub restart: RestartType,
    /// Time between CANCEL and terminate when stopped (zero: terminate at once).
    pub shutdown: Duration,
    /// Spawn arguments.
    pub args: Vec<Value>,
    /// Host (None: the default host).
    pub host: Option<Id>,
    /// `restart_on_change` (default true): restarted (through its `shutdown`) when the
    /// registry changes its code.
    pub restart_on_change: bool,
    /// OTP's `significant`: its ending by itself may stop the tree (see
    /// [`AutoShutdown`]); only for transient and temporary children.
    pub significant: bool,
    /// When a process child counts as started.
    pub start: StartMode,
    /// How long a process child may take to start (default 10 s); past it the start
    /// fails and the child is terminated.
    pub start_timeout: Duration,
}

impl ChildSpec {
    /// `worker` or `supervisor`, as OTP's child type.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ChildKind::Process(_) => "worker",
            ChildKind::Tree(_) => "supervisor",
        }
    }
}

/// A parsed `supervisor` entry.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    /// The supervisor id.
    pub id: Id,
    /// Restart strategy.
    pub strategy: Strategy,
    /// At most this many restarts (default 1, as OTP's intensity)...
    pub max_restarts: u32,
    /// ...within this period (default 5 s, as OTP's; must be longer than 0), or the
    /// supervisor fails to its parent.
    pub period: Duration,
    /// Children, in start order (for `simple_one_for_one`: the one template).
    pub children: Vec<ChildSpec>,
    /// When significant children stop the tree.
    pub auto_shutdown: AutoShutdown,
}

/// Every service and tree of a registry.
#[derive(Clone, Debug, Default)]
pub struct Specs {
    /// Services by id.
    pub services: BTreeMap<Id, Arc<ServiceSpec>>,
    /// Trees by id.
    pub trees: BTreeMap<Id, Arc<TreeSpec>>,
}

const PROCESS_KINDS: &[&str] = &["process.lua", "process.wasm"];

struct Checker<'a> {
    registry: &'a Registry,
    errors: Vec<LoadError>,
}

impl Checker<'_> {
    fn err(&mut self, e: &Entry, field: &str, message: impl Into<String>) {
        let err = fields::error(&self.registry.root, e, field, message);
        self.errors.push(err);
    }

    /// What a `fields` reader read of `field`; its error is recorded (None then).
    fn read<T>(&mut self, e: &Entry, field: &str, r: Result<Option<T>, String>) -> Option<T> {
        r.unwrap_or_else(|msg| {
            self.err(e, field, msg);
            None
        })
    }

    fn duration(
        &mut self,
        e: &Entry,
        v: Option<&Json>,
        field: &str,
        default: Duration,
    ) -> Duration {
        self.read(e, field, fields::duration(v)).unwrap_or(default)
    }

    fn flag(&mut self, e: &Entry, v: Option<&Json>, field: &str, default: bool) -> bool {
        self.read(e, field, fields::flag(v)).unwrap_or(default)
    }

    /// A service's `lifecycle.security`: `actor: {id, meta}`, `policies` (ids of
    /// `security.policy` entries), `groups` (every policy of that group, a bare group name
    /// in the service's namespace), made into the context its process runs with.
    fn service_security(
        &mut self,
        e: &Entry,
        sec: &Json,
    ) -> Option<std::sync::Arc<crate::functions::CallContext>> {
        let actor = sec.get("actor");
        let id = actor.and_then(|a| a.get("id")).and_then(Json::as_str);
        let id = id.filter(|i| !i.is_empty());
        if id.is_none() {
            self.err(e, "lifecycle.security.actor.id", "an actor id is required");
        }
        let meta = actor
            .and_then(|a| a.get("meta"))
            .map(crate::value::from_json)
            .unwrap_or(Value::Map(Vec::new()));
        let mut scope: Vec<String> = Vec::new();
        if let Some(ps) = sec.get("policies").and_then(Json::as_array) {
            for p in ps {
                let Some(pid) = self.reference(e, p, "lifecycle.security.policies") else {
                    continue;
                };
                if self.registry.policy(&pid).is_none() {
                    self.err(
                        e,
                        "lifecycle.security.policies",
                        format!("{pid} is not a security.policy entry"),
                    );
                    continue;
                }
                if !scope.contains(&pid.to_string()) {
                    scope.push(pid.to_string());
                }
            }
        }
        if let Some(gs) = sec.get("groups").and_then(Json::as_array) {
            for g in gs {
                let Some(name) = g.as_str() else {
                    self.err(
                        e,
                        "lifecycle.security.groups",
                        format!("expected a group name, found {g}"),
                    );
                    continue;
                };
                let (ns, group) = match name.split_once(':') {
                    Some((ns, g)) => (ns.to_string(), g.to_string()),
                    None => (e.id.namespace.clone(), name.to_string()),
                };
                for p in self.registry.policies_in_group(&ns, &group) {
                    if !scope.contains(&p.id) {
                        scope.push(p.id.clone());
                    }
                }
            }
        }
        Some(std::sync::Arc::new(crate::functions::CallContext {
            actor: Some(id?.to_string()),
            actor_meta: Some(meta),
            scope: Some(scope),
            ..Default::default()
        }))
    }

    fn reference(&mut self, e: &Entry, v: &Json, field: &str) -> Option<Id> {
        self.read(e, field, fields::reference(v, &e.id.namespace).map(Some))
    }

    fn args(&mut self, e: &Entry, v: Option<&Json>, field: &str) -> Vec<Value> {
        self.read(e, field, fields::list(v))
            .map(|items| items.iter().map(value::from_json).collect())
            .unwrap_or_default()
    }

    fn host(&mut self, e: &Entry, v: Option<&Json>, field: &str) -> Option<Id> {
        let v = v.filter(|v| !v.is_null())?;
        let id = self.reference(e, v, field)?;
        match self.registry.get(&id) {
            Some(h) if matches!(h.spec, EntrySpec::ProcessHost(_) | EntrySpec::TerminalHost) => {
                Some(id)
            }
            Some(h) => {
                self.err(
                    e,
                    field,
                    format!("{id} is a {}, not a process.host or terminal.host", h.kind),
                );
                None
            }
            None => {
                self.err(e, field, format!("dangling reference: {id} does not exist"));
                None
            }
        }
    }

    /// The target of a service's `process` or a child's `process` / `supervisor`.
    fn target(&mut self, e: &Entry, v: &Json, field: &str, allow_tree: bool) -> Option<Target> {
        let id = self.reference(e, v, field)?;
        match self.registry.get(&id) {
            Some(t) if PROCESS_KINDS.contains(&t.kind.as_str()) => Some(Target::Process(id)),
            Some(t) if t.kind == "supervisor" && allow_tree => Some(Target::Tree(id)),
            Some(t) => {
                let want = if allow_tree {
                    "a process entry or a supervisor"
                } else {
                    "a process entry"
                };
                self.err(e, field, format!("{id} is a {}, not {want}", t.kind));
                None
            }
            None => {
                self.err(e, field, format!("dangling reference: {id} does not exist"));
                None
            }
        }
    }

    fn service(&mut self, e: &Entry) -> Option<ServiceSpec> {
        let raw = &e.raw;
        let before = self.errors.len();
        let target = match raw.get("process") {
            None | Some(Json::Null) => {
                self.err(
                    e,
                    "process",
                    "missing required field (the process entry or supervisor to run)",
                );
                None
            }
            Some(v) => self.target(e, v, "process", true),
        };
        let host = self.host(e, raw.get("host"), "host");
        // `input` as Wippy names a service's arguments (en/guides/entry-kinds.md); warden's
        // older `args` is still read
        let args = match raw.get("input").filter(|v| !v.is_null()) {
            Some(input) => {
                if raw.get("args").is_some_and(|a| !a.is_null()) {
                    self.err(e, "args", "give the arguments once, as `input`");
                }
                self.args(e, Some(input), "input")
            }
            None => self.args(e, raw.get("args"), "args"),
        };
        let empty = Json::Object(Default::default());
        let lc = match raw.get("lifecycle") {
            None | Some(Json::Null) => &empty,
            Some(v @ Json::Object(_)) => v,
            Some(other) => {
                self.err(e, "lifecycle", format!("expected a mapping, found {other}"));
                &empty
            }
        };
        let auto_start = self.flag(e, lc.get("auto_start"), "lifecycle.auto_start", false);
        let restart_on_change = self.flag(
            e,
            lc.get("restart_on_change"),
            "lifecycle.restart_on_change",
            true,
        );
        let start_timeout = self.duration(
            e,
            lc.get("start_timeout"),
            "lifecycle.start_timeout",
            Duration::from_secs(10),
        );
        let stop_timeout = self.duration(
            e,
            lc.get("stop_timeout"),
            "lifecycle.stop_timeout",
            Duration::from_secs(10),
        );
        let stable_threshold = self.duration(
            e,
            lc.get("stable_threshold"),
            "lifecycle.stable_threshold",
            Duration::from_secs(5),
        );
        let mut requires = Vec::new();
        for key in ["requires", "depends_on"] {
            let field = format!("lifecycle.{key}");
            match lc.get(key) {
                None | Some(Json::Null) => {}
                Some(Json::Array(items)) => {
                    for item in items {
                        if let Some(id) = self.reference(e, item, &field) {
                            // en/guides/supervision.md requires a database in its own
                            // example: an entry that is not a service is ready once loaded,
                            // and one warden does not run (skipped at load) is not waited for
                            match self.registry.get(&id) {
                                Some(d) if d.kind == "process.service" => requires.push(id),
                                Some(_) => {}
                                None => tracing::warn!(
                                    "{}: {field}: {id} is not an entry warden runs; not waited for",
                                    e.id
                                ),
                            }
                        }
                    }
                }
                Some(other) => self.err(
                    e,
                    &field,
                    format!("expected a list of service ids, found {other}"),
                ),
            }
        }
        let d = RestartPolicy::default();
        let r = match lc.get("restart") {
            None | Some(Json::Null) => &empty,
            Some(v @ Json::Object(_)) => v,
            Some(other) => {
                self.err(
                    e,
                    "lifecycle.restart",
                    format!("expected a mapping, found {other}"),
                );
                &empty
            }
        };
        let initial_delay = self.duration(
            e,
            r.get("initial_delay"),
            "lifecycle.restart.initial_delay",
            d.initial_delay,
        );
        let max_delay = self.duration(
            e,
            r.get("max_delay"),
            "lifecycle.restart.max_delay",
            d.max_delay,
        );
        let backoff_factor = self
            .read(
                e,
                "lifecycle.restart.backoff_factor",
                fields::number(r.get("backoff_factor"), 1.0..=f64::MAX, "at least 1"),
            )
            .unwrap_or(d.backoff_factor);
        let jitter = self
            .read(
                e,
                "lifecycle.restart.jitter",
                fields::number(r.get("jitter"), 0.0..=1.0, "between 0 and 1"),
            )
            .unwrap_or(d.jitter);
        let max_attempts = self
            .read(
                e,
                "lifecycle.restart.max_attempts",
                fields::count(r.get("max_attempts")),
            )
            .unwrap_or(0);
        let placement = match raw.get("placement") {
            None | Some(Json::Null) => None,
            Some(Json::Object(m)) => match m.get("node") {
                Some(Json::String(n)) if !n.is_empty() => Some(n.clone()),
                other => {
                    self.err(
                        e,
                        "placement.node",
                        format!(
                            "expected a node name, found {}",
                            other.map_or("nothing".to_string(), |v| v.to_string())
                        ),
                    );
                    None
                }
            },
            Some(other) => {
                self.err(
                    e,
                    "placement",
                    format!("expected a mapping such as {{node: NAME}}, found {other}"),
                );
                None
            }
        };
        let security = match lc.get("security") {
            None | Some(Json::Null) => None,
            Some(sec @ Json::Object(_)) => self.service_security(e, sec),
            Some(other) => {
                self.err(
                    e,
                    "lifecycle.security",
                    format!("expected a mapping {{actor, policies, groups}}, found {other}"),
                );
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ServiceSpec {
            placement,
            security,
            id: e.id.clone(),
            target: target?,
            host,
            args,
            auto_start,
            start_timeout,
            stop_timeout,
            stable_threshold,
            requires,
            restart_on_change,
            restart: RestartPolicy {
                initial_delay,
                max_delay,
                backoff_factor,
                jitter,
                max_attempts,
            },
        })
    }

    fn tree(&mut self, e: &Entry) -> Option<TreeSpec> {
        let raw = &e.raw;
        let before = self.errors.len();
        let strategy = match raw.get("strategy") {
            None | Some(Json::Null) => Strategy::OneForOne,
            Some(Json::String(s)) => match fields::one_of(
                "strategy",
                s,
                &[
                    "one_for_one",
                    "one_for_all",
                    "rest_for_one",
                    "simple_one_for_one",
                ],
            ) {
                Ok("one_for_all") => Strategy::OneForAll,
                Ok("rest_for_one") => Strategy::RestForOne,
                Ok("simple_one_for_one") => Strategy::SimpleOneForOne,
                Ok(_) => Strategy::OneForOne,
                Err(msg) => {
                    self.err(e, "strategy", msg);
                    Strategy::OneForOne
                }
            },
            Some(other) => {
                self.err(
                    e,
                    "strategy",
                    format!("expected a strategy name, found {other}"),
                );
                Strategy::OneForOne
            }
        };
        let empty = Json::Object(Default::default());
        let intensity = raw
            .get("intensity")
            .filter(|v| !v.is_null())
            .unwrap_or(&empty);
        let max_restarts = self
            .read(
                e,
                "intensity.max_restarts",
                fields::count(intensity.get("max_restarts")),
            )
            .unwrap_or(1);
        let period = self.duration(
            e,
            intensity.get("period"),
            "intensity.period",
            Duration::from_secs(5),
        );
        if period.is_zero() {
            self.err(
                e,
                "intensity.period",
                "must be longer than 0 (OTP rejects a period of 0 as invalid_period)",
            );
        }
        let auto_shutdown = match raw.get("auto_shutdown") {
            None | Some(Json::Null) => AutoShutdown::Never,
            Some(Json::String(s)) => match fields::one_of(
                "auto_shutdown",
                s,
                &["never", "any_significant", "all_significant"],
            ) {
                Ok("any_significant") => AutoShutdown::AnySignificant,
                Ok("all_significant") => AutoShutdown::AllSignificant,
                Ok(_) => AutoShutdown::Never,
                Err(msg) => {
                    self.err(e, "auto_shutdown", msg);
                    AutoShutdown::Never
                }
            },
            Some(other) => {
                self.err(
                    e,
                    "auto_shutdown",
                    format!("expected never, any_significant or all_significant, found {other}"),
                );
                AutoShutdown::Never
            }
        };
        let mut children = Vec::new();
        match raw.get("children") {
            Some(Json::Array(items)) => {
                let mut seen = HashMap::new();
                for (i, c) in items.iter().enumerate() {
                    let at = format!("children[{}]", i + 1);
                    if let Some(id) = c.get("id").and_then(|v| v.as_str()) {
                        if let Some(prev) = seen.insert(id.to_string(), i) {
                            self.err(
                                e,
                                &format!("{at}.id"),
                                format!("duplicate child id {id} (also children[{}])", prev + 1),
                            );
                        }
                    }
                    if let Some(child) = self.child(e, c, &at, auto_shutdown) {
                        children.push(child);
                    }
                }
                if strategy == Strategy::SimpleOneForOne && items.len() != 1 {
                    self.err(
                        e,
                        "children",
                        format!("a simple_one_for_one supervisor has exactly one child, the template of the children it starts; found {}", items.len()),
                    );
                }
            }
            None | Some(Json::Null) => {
                self.err(e, "children", "missing required field (a list of children)")
            }
            Some(other) => self.err(e, "children", format!("expected a list, found {other}")),
        }
        if self.errors.len() > before {
            return None;
        }
        Some(TreeSpec {
            id: e.id.clone(),
            strategy,
            max_restarts,
            period,
            children,
            auto_shutdown,
        })
    }

    /// One child spec (a mapping); `at` names it in errors.
    fn child(
        &mut self,
        e: &Entry,
        c: &Json,
        at: &str,
        auto_shutdown: AutoShutdown,
    ) -> Option<ChildSpec> {
        let before = self.errors.len();
        let Some(m) = c.as_object() else {
            self.err(
                e,
                at,
                format!("expected a mapping like {{id: x, process: ns:entry}}, found {c}"),
            );
            return None;
        };
        let id = match m.get("id").and_then(|v| v.as_str()) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                self.err(
                    e,
                    &format!("{at}.id"),
                    "missing required field (a name unique in this supervisor)",
                );
                return None;
            }
        };
        let kind = match (m.get("process"), m.get("supervisor")) {
            (Some(p), None) => match self.target(e, p, &format!("{at}.process"), false) {
                Some(Target::Process(id)) => Some(ChildKind::Process(id)),
                _ => None,
            },
            (None, Some(s)) => match self.reference(e, s, &format!("{at}.supervisor")) {
                Some(id) => match self.registry.get(&id) {
                    Some(t) if t.kind == "supervisor" => Some(ChildKind::Tree(id)),
                    Some(t) => {
                        self.err(
                            e,
                            &format!("{at}.supervisor"),
                            format!("{id} is a {}, not a supervisor", t.kind),
                        );
                        None
                    }
                    None => {
                        self.err(
                            e,
                            &format!("{at}.supervisor"),
                            format!("dangling reference: {id} does not exist"),
                        );
                        None
                    }
                },
                None => None,
            },
            (Some(_), Some(_)) => {
                self.err(e, at, "a child has either process or supervisor, not both");
                None
            }
            (None, None) => {
                self.err(
                    e,
                    &format!("{at}.process"),
                    "missing: a child needs process (an entry id) or supervisor",
                );
                None
            }
        };
        let restart = match m.get("restart") {
            None | Some(Json::Null) => RestartType::Permanent,
            Some(Json::String(s)) => {
                match fields::one_of("restart type", s, &["permanent", "transient", "temporary"]) {
                    Ok("transient") => RestartType::Transient,
                    Ok("temporary") => RestartType::Temporary,
                    Ok(_) => RestartType::Permanent,
                    Err(msg) => {
                        self.err(e, &format!("{at}.restart"), msg);
                        RestartType::Permanent
                    }
                }
            }
            Some(other) => {
                self.err(
                    e,
                    &format!("{at}.restart"),
                    format!("expected a restart type, found {other}"),
                );
                RestartType::Permanent
            }
        };
        // OTP's defaults: 5 s for a worker, infinity for a supervisor
        let default_shutdown = match kind {
            Some(ChildKind::Tree(_)) => INFINITY,
            _ => Duration::from_secs(5),
        };
        let shutdown = match m.get("shutdown") {
            Some(Json::String(s)) if s == "brutal_kill" => Duration::ZERO,
            Some(Json::String(s)) if s == "infinity" => INFINITY,
            v => self.duration(e, v, &format!("{at}.shutdown"), default_shutdown),
        };
        let args = self.args(e, m.get("args"), &format!("{at}.args"));
        let host = self.host(e, m.get("host"), &format!("{at}.host"));
        let restart_on_change = self.flag(
            e,
            m.get("restart_on_change"),
            &format!("{at}.restart_on_change"),
            true,
        );
        let significant = self.flag(e, m.get("significant"), &format!("{at}.significant"), false);
        if significant && restart == RestartType::Permanent {
            self.err(
                e,
                &format!("{at}.significant"),
                "a significant child must be transient or temporary (OTP refuses a permanent one)",
            );
        }
        if significant && auto_shutdown == AutoShutdown::Never {
            self.err(
                e,
                &format!("{at}.significant"),
                "significant children need the supervisor's auto_shutdown: any_significant or all_significant (with never, OTP refuses them)",
            );
        }
        let start = match m.get("start") {
            None | Some(Json::Null) => StartMode::FirstWait,
            Some(Json::String(s)) if s == "first_wait" => StartMode::FirstWait,
            Some(Json::String(s)) if s == "ack" => StartMode::Ack,
            Some(other) => {
                self.err(
                    e,
                    &format!("{at}.start"),
                    format!("expected first_wait or ack, found {other}"),
                );
                StartMode::FirstWait
            }
        };
        let start_timeout = self.duration(
            e,
            m.get("start_timeout"),
            &format!("{at}.start_timeout"),
            Duration::from_secs(10),
        );
        let kind = kind?;
        let spec = ChildSpec {
            id,
            kind,
            restart,
            shutdown,
            args,
            host,
            restart_on_change,
            significant,
            start,
            start_timeout,
        };
        match m.get("type") {
            None | Some(Json::Null) => {}
            Some(Json::String(t)) if t == spec.kind_name() => {}
            Some(Json::String(t)) if t == "worker" || t == "supervisor" => self.err(
                e,
                &format!("{at}.type"),
                format!(
                    "type {t} does not match the child, which is a {} ({})",
                    spec.kind_name(),
                    if spec.kind_name() == "worker" {
                        "it runs a process"
                    } else {
                        "it runs a supervisor"
                    }
                ),
            ),
            Some(other) => self.err(
                e,
                &format!("{at}.type"),
                format!("expected worker or supervisor, found {other}"),
            ),
        }
        (self.errors.len() == before).then_some(spec)
    }
}

/// Finds a cycle in a graph given as id -> successors; returns it as "a -> b -> a".
fn find_cycle(edges: &BTreeMap<Id, Vec<Id>>) -> Option<(Id, String)> {
    fn visit(
        n: &Id,
        edges: &BTreeMap<Id, Vec<Id>>,
        state: &mut HashMap<Id, u8>,
        path: &mut Vec<Id>,
    ) -> Option<String> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut names: Vec<String> = path[start..].iter().map(|p| p.to_string()).collect();
                names.push(n.to_string());
                return Some(names.join(" -> "));
            }
            _ => {}
        }
        state.insert(n.clone(), 1);
        path.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = HashMap::new();
    for n in edges.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(n, edges, &mut state, &mut path) {
            return Some((n.clone(), c));
        }
    }
    None
}

/// Parses and checks one child spec given at run time (OTP's `start_child` /
/// `check_childspecs`), as a child of the supervisor entry `tree` (ids resolve in its
/// namespace). The error names the field: `restart: unknown restart type ...`.
pub fn child_spec(
    registry: &Registry,
    tree: &Entry,
    spec: &Json,
    auto_shutdown: AutoShutdown,
) -> Result<ChildSpec, String> {
    let mut c = Checker {
        registry,
        errors: Vec::new(),
    };
    match c.child(tree, spec, "child", auto_shutdown) {
        Some(child) if c.errors.is_empty() => Ok(child),
        _ => Err(c
            .errors
            .iter()
            .map(|e| match &e.field {
                Some(f) => format!("{}: {}", f.strip_prefix("child.").unwrap_or(f), e.message),
                None => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Parses and checks every `process.service` and `supervisor` entry of `registry`.
pub fn check(registry: &Registry) -> Result<Specs, Vec<LoadError>> {
    let mut c = Checker {
        registry,
        errors: Vec::new(),
    };
    let mut specs = Specs::default();
    for e in registry.of_kind("process.service") {
        if let Some(s) = c.service(e) {
            specs.services.insert(s.id.clone(), Arc::new(s));
        }
    }
    for e in registry.of_kind("supervisor") {
        if let Some(t) = c.tree(e) {
            specs.trees.insert(t.id.clone(), Arc::new(t));
        }
    }
    let requires: BTreeMap<Id, Vec<Id>> = specs
        .services
        .values()
        .map(|s| (s.id.clone(), s.requires.clone()))
        .collect();
    if let Some((at, cycle)) = find_cycle(&requires) {
        if let Some(e) = registry.get(&at) {
            c.err(
                e,
                "lifecycle.requires",
                format!("dependency cycle: {cycle}"),
            );
        }
    }
    let nesting: BTreeMap<Id, Vec<Id>> = specs
        .trees
        .values()
        .map(|t| {
            let subs = t
                .children
                .iter()
                .filter_map(|ch| match &ch.kind {
                    ChildKind::Tree(id) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            (t.id.clone(), subs)
        })
        .collect();
    if let Some((at, cycle)) = find_cycle(&nesting) {
        if let Some(e) = registry.get(&at) {
            c.err(
                e,
                "children",
                format!("supervisors nest in a cycle: {cycle}"),
            );
        }
    }
    if c.errors.is_empty() {
        Ok(specs)
    } else {
        Err(c.errors)
    }
}

impl Specs {
    /// Services in start order: levels of services whose requirements are all in earlier
    /// levels (each level may start concurrently).
    pub fn levels(&self, ids: &[Id]) -> Vec<Vec<Id>> {
        let mut wanted: Vec<Id> = Vec::new();
        let mut stack: Vec<Id> = ids.to_vec();
        while let Some(id) = stack.pop() {
            if wanted.contains(&id) {
                continue;
            }
            if let Some(s) = self.services.get(&id) {
                stack.extend(s.requires.iter().cloned());
                wanted.push(id);
            }
        }
        let mut placed: HashMap<Id, usize> = HashMap::new();
        let mut levels: Vec<Vec<Id>> = Vec::new();
        while placed.len() < wanted.len() {
            let mut level = Vec::new();
            for id in &wanted {
                if placed.contains_key(id) {
                    continue;
                }
                let s = &self.services[id];
                if s.requires.iter().all(|r| placed.contains_key(r)) {
                    level.push(id.clone());
                }
            }
            if level.is_empty() {
                break; // a cycle; refused at load
            }
            level.sort();
            for id in &level {
                placed.insert(id.clone(), levels.len());
            }
            levels.push(level);
        }
        levels
    }
}
