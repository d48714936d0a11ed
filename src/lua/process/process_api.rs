//! The global `process` table: pid, spawn*, send, inbox, listen, events, monitor, link,
//! options, cancel, terminate, exec, and the name registry.
//!
//! Every call follows the `value, err` convention: an expected failure (bad pid, missing
//! entry, reserved topic, a value that cannot be copied) returns `nil, err` with an error
//! object; only misuse of the language itself raises.

use crate::functions::CallContext;
use crate::lua::errors::LuaError;
use crate::lua::{channel::LuaChannel, current, ProcCtx};
use crate::process::{Exit, Pid, SpawnOptions};
use crate::registry::Id;
use crate::value;
use mlua::{IntoLuaMulti, Lua, MultiValue, Table, Variadic};
use std::rc::Rc;
use std::sync::Arc;

type LResult = Result<MultiValue, LuaError>;

fn finish(lua: &Lua, r: LResult) -> mlua::Result<MultiValue> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => e.into_nil_err(lua),
    }
}

fn ret(lua: &Lua, v: impl IntoLuaMulti) -> LResult {
    v.into_lua_multi(lua)
        .map_err(|e| LuaError::new("INTERNAL", e.to_string()))
}

fn string_arg(v: &mlua::Value, what: &str) -> Result<String, LuaError> {
    match v {
        mlua::Value::String(s) => Ok(s.to_string_lossy()),
        other => Err(LuaError::new(
            "INVALID",
            format!("{what}: expected a string, got {}", other.type_name()),
        )),
    }
}

fn dest(ctx: &ProcCtx, v: &mlua::Value, func: &str) -> Result<Pid, LuaError> {
    let resolved = match v {
        mlua::Value::String(s) => match s.to_str() {
            Ok(s) => ctx.node.resolve(&s),
            Err(_) => ctx.node.resolve(&s.to_string_lossy()),
        },
        other => {
            return Err(LuaError::new(
                "INVALID",
                format!(
                    "process.{func}: destination: expected a string, got {}",
                    other.type_name()
                ),
            ))
        }
    };
    let pid = resolved.map_err(|e| LuaError::new(e.kind(), format!("process.{func}: {e}")))?;
    // en/lua/core/process.md, "Permission Reference": `process.<func>` on the target pid
    // (the process's own context says whether it is under a scope: one field)
    if crate::lua::security::checked(&ctx.node, ctx.call_context.get().map(|c| &**c)) {
        crate::lua::security::check_now(&format!("process.{func}"), &pid.to_string())
            .map_err(|e| LuaError::new(e.kind, format!("process.{func}: {}", e.message)))?;
    }
    Ok(pid)
}

/// An id's text and the id parsed from it.
type ParsedId = (Box<[u8]>, Rc<Id>);

thread_local! {
    /// Ids this worker's spawns parsed last, by their text: a process spawns the same few
    /// entries on the same few hosts, and parsing is a pure function of the text (so the
    /// cache is shared by the worker's processes without one seeing anything of another).
    static PARSED_IDS: std::cell::RefCell<Vec<ParsedId>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// How many parsed ids a worker keeps (see [`PARSED_IDS`]).
const PARSED_IDS_KEPT: usize = 8;

/// The id written as `bytes`, parsed once per worker and text (see [`PARSED_IDS`]).
pub(super) fn parsed_id(bytes: &[u8]) -> Result<Rc<Id>, String> {
    let kept = PARSED_IDS.with(|c| {
        let c = c.borrow();
        c.iter()
            .find(|(text, _)| **text == *bytes)
            .map(|(_, id)| id.clone())
    });
    if let Some(id) = kept {
        return Ok(id);
    }
    let id = Rc::new(Id::parse(&String::from_utf8_lossy(bytes))?);
    PARSED_IDS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() == PARSED_IDS_KEPT {
            c.remove(0);
        }
        c.push((bytes.into(), id.clone()));
    });
    Ok(id)
}

/// An entry or host id argument of `process.{func}` (`what` names it in the error).
fn entry_id(v: &mlua::Value, func: &str, what: &str) -> Result<Rc<Id>, LuaError> {
    let mlua::Value::String(s) = v else {
        return Err(LuaError::new(
            "INVALID",
            format!(
                "process.{func}: {what}: expected a string, got {}",
                v.type_name()
            ),
        ));
    };
    parsed_id(&s.as_bytes()).map_err(|e| {
        LuaError::new(
            "INVALID",
            format!(
                "process.{func}: invalid {what} {:?}: {e}",
                s.to_string_lossy()
            ),
        )
    })
}

/// Whether a host argument names a host of another node, `node:namespace:host` (two
/// colons; checked on the bytes, so a plain host id, the common case, is parsed once).
pub(super) fn names_another_node(host: &[u8]) -> bool {
    host.iter().filter(|&&c| c == b':').count() > 1
}

/// The host to spawn on: the caller's (nil), a host id, or `node:host-id` (a host of
/// another node of the cluster) -> (the other node, the host; None: the caller's host).
fn host_id(
    ctx: &ProcCtx,
    v: &mlua::Value,
    func: &str,
) -> Result<(Option<String>, Option<Rc<Id>>), LuaError> {
    match v {
        mlua::Value::Nil => Ok((None, None)),
        mlua::Value::String(s) if names_another_node(&s.as_bytes()) => {
            let text = s.to_string_lossy();
            let (node, host) = text.split_once(':').unwrap_or_default();
            let host = Id::parse(host).map_err(|e| {
                LuaError::new(
                    "INVALID",
                    format!("process.{func}: invalid host id {text:?}: {e}"),
                )
            })?;
            let node = (node != &*ctx.node.name).then(|| node.to_string());
            Ok((node, Some(Rc::new(host))))
        }
        other => Ok((None, Some(entry_id(other, func, "host id")?))),
    }
}

/// Which `spawn*` function: its name, and whether the new process is linked to its
/// spawner, monitored by it, or both.
#[derive(Clone, Copy)]
pub(super) struct SpawnKind {
    pub(super) name: &'static str,
    pub(super) link: bool,
    pub(super) monitor: bool,
}

/// A process a `spawn*` call started: on this node (its handle, which has its pid text)
/// or on another one.
enum NewProcess {
    Here(Arc<crate::process::ProcessHandle>),
    There(Pid),
}

impl NewProcess {
    fn pid(&self) -> &Pid {
        match self {
            NewProcess::Here(h) => &h.pid,
            NewProcess::There(pid) => pid,
        }
    }

    /// Its pid as a Lua string.
    fn text(&self, lua: &Lua) -> mlua::Result<mlua::String> {
        match self {
            NewProcess::Here(h) => lua.create_string(&*h.text),
            NewProcess::There(pid) => lua.create_string(pid.text()),
        }
    }
}

fn spawn_impl(
    ctx: &Rc<ProcCtx>,
    kind: SpawnKind,
    id: &mlua::Value,
    host: &mlua::Value,
    args: &[mlua::Value],
    on_exit: Option<crate::process::ExitCallback>,
    context: Option<Arc<CallContext>>,
) -> Result<NewProcess, LuaError> {
    let id = entry_id(id, kind.name, "entry id")?;
    let (on_node, host) = host_id(ctx, host, kind.name)?;
    let host = host.as_deref().unwrap_or(&ctx.me.host.id);
    // en/lua/core/process.md, "Multiple Permissions": checked before anything runs (a
    // spawn from code under no scope skips the texts)
    if crate::lua::security::checked(&ctx.node, ctx.call_context.get().map(|c| &**c)) {
        let entry = id.to_string();
        let first = if kind.name == "exec" {
            "process.exec"
        } else {
            "process.spawn"
        };
        let mut checks = vec![(first, entry.as_str())];
        if kind.monitor && kind.name != "exec" {
            checks.push(("process.spawn.monitored", entry.as_str()));
        }
        if kind.link {
            checks.push(("process.spawn.linked", entry.as_str()));
        }
        let host_name = host.to_string();
        checks.push(("process.host", host_name.as_str()));
        for (action, resource) in checks {
            crate::lua::security::check_now(action, resource).map_err(|e| {
                LuaError::new(e.kind, format!("process.{}: {}", kind.name, e.message))
            })?;
        }
    }
    let args = value::from_lua_multi(args)
        .map_err(|e| LuaError::new("INVALID", format!("process.{}: spawn {e}", kind.name)))?;
    let opts = SpawnOptions {
        link_to: kind.link.then(|| ctx.pid().clone()),
        monitor_by: kind.monitor.then(|| ctx.pid().clone()),
        on_exit,
        context,
        start: None,
    };
    if let Some(node) = on_node {
        if opts.on_exit.is_some() {
            return Err(LuaError::new(
                "INVALID",
                format!("process.{}: this spawn runs on this node only", kind.name),
            ));
        }
        return ctx
            .node
            .spawn_remote(&node, &id, host, args, opts)
            .map(NewProcess::There)
            .map_err(|e| LuaError::new(e.kind(), format!("process.{}: {e}", kind.name)));
    }
    ctx.node
        .spawn_handle(None, &id, host, args, opts)
        .map(NewProcess::Here)
        .map_err(|e| LuaError::new(e.kind(), format!("process.{}: {e}", kind.name)))
}

fn add_spawn(lua: &Lua, t: &Table, kind: SpawnKind) -> mlua::Result<()> {
    let general = lua.create_function(
        move |lua, (id, host, args): (mlua::Value, mlua::Value, Variadic<mlua::Value>)| {
            spawn_call(lua, kind, &id, &host, &args, None)
        },
    )?;
    t.set(
        kind.name,
        crate::lua::process::spawn::fast_spawn(lua, general, kind)?,
    )
}

/// A `spawn*` call from Lua: the pid as a string, or `nil, err`.
fn spawn_call(
    lua: &Lua,
    kind: SpawnKind,
    id: &mlua::Value,
    host: &mlua::Value,
    args: &[mlua::Value],
    builder: Option<&SpawnBuilder>,
) -> mlua::Result<MultiValue> {
    let ctx = current()?;
    match spawn_built(&ctx, kind, id, host, args, None, builder) {
        Ok(new) => Ok(MultiValue::from_iter([mlua::Value::String(new.text(lua)?)])),
        Err(e) => e.into_nil_err(lua),
    }
}

/// A spawn with what a builder adds: its context, then its name registered and its
/// queued messages sent before the pid is returned (a name that is taken stops the new
/// process and fails the spawn with ALREADY_EXISTS).
fn spawn_built(
    ctx: &Rc<ProcCtx>,
    kind: SpawnKind,
    id: &mlua::Value,
    host: &mlua::Value,
    args: &[mlua::Value],
    on_exit: Option<crate::process::ExitCallback>,
    builder: Option<&SpawnBuilder>,
) -> Result<NewProcess, LuaError> {
    let context = builder.map(|b| b.context.clone());
    if let Some(c) = &context {
        // a child under another actor or scope: `process.security` on "security"
        let own = ctx.call_context.get();
        let same = own.is_some_and(|o| o.actor == c.actor && o.scope == c.scope)
            || (own.is_none() && c.scope.is_none() && c.actor_meta.is_none());
        if !same {
            crate::lua::security::check_now("process.security", "security").map_err(|e| {
                LuaError::new(e.kind, format!("process.{}: {}", kind.name, e.message))
            })?;
        }
    }
    let new = spawn_impl(ctx, kind, id, host, args, on_exit, context)?;
    let Some(b) = builder else {
        return Ok(new);
    };
    let pid = new.pid();
    if let Some(name) = &b.name {
        if let Err(e) = ctx.node.register_name(name, pid) {
            let _ = ctx.node.terminate(pid);
            return Err(LuaError::new(
                e.kind(),
                format!("process.{}: with_name: {e}", kind.name),
            ));
        }
    }
    for (topic, payload) in &b.messages {
        ctx.node
            .send(Some(ctx.pid()), pid, topic.clone(), payload.clone())
            .map_err(|e| {
                LuaError::new(
                    e.kind(),
                    format!("process.{}: with_message: {e}", kind.name),
                )
            })?;
    }
    Ok(new)
}

/// A spawner (en/lua/core/process.md, "Context Spawner"): made by `process.with_context`
/// or `process.with_options`, changed by its `with_*` methods (each returns a new one),
/// used by its `spawn*` and `exec` methods. Its children run with its call context
/// (`ctx.get`, the actor and scope of their calls), under its name, with its queued
/// messages waiting in their inbox.
#[derive(Clone)]
struct SpawnBuilder {
    context: Arc<CallContext>,
    name: Option<String>,
    messages: Vec<(String, Vec<value::Value>)>,
}

impl SpawnBuilder {
    /// A builder over the calling process's context (the one it was given; a child of a
    /// process that was given none is its own actor).
    fn of(ctx: &ProcCtx) -> SpawnBuilder {
        SpawnBuilder {
            context: Arc::new(
                ctx.call_context
                    .get()
                    .map(|c| (**c).clone())
                    .unwrap_or_default(),
            ),
            name: None,
            messages: Vec::new(),
        }
    }

    fn with_values(&self, values: &mlua::Value, func: &str) -> Result<SpawnBuilder, LuaError> {
        let values = match values {
            mlua::Value::Table(t) => crate::lua::funcs::context_values(t)
                .map_err(|e| LuaError::new("INVALID", format!("{func}: {e}")))?,
            mlua::Value::Nil => Vec::new(),
            other => {
                return Err(LuaError::new(
                    "INVALID",
                    format!(
                        "{func}: expected a table of values, got {}",
                        other.type_name()
                    ),
                ))
            }
        };
        Ok(self.with_call_context(|c| *c = c.with(values)))
    }

    /// This spawner with its call context changed by `change`.
    fn with_call_context(&self, change: impl FnOnce(&mut CallContext)) -> SpawnBuilder {
        let mut context = (*self.context).clone();
        change(&mut context);
        SpawnBuilder {
            context: Arc::new(context),
            ..self.clone()
        }
    }

    /// Spawn-time options: warden has none beyond Wippy's `network`, which needs the
    /// `network.*` kinds warden does not run.
    fn with_options(&self, opts: &mlua::Value, func: &str) -> Result<SpawnBuilder, LuaError> {
        let t = match opts {
            mlua::Value::Table(t) => t,
            mlua::Value::Nil => return Ok(self.clone()),
            other => {
                return Err(LuaError::new(
                    "INVALID",
                    format!(
                        "{func}: expected a table of options, got {}",
                        other.type_name()
                    ),
                ))
            }
        };
        if let Some(pair) = t.pairs::<mlua::Value, mlua::Value>().next() {
            let (k, _) = pair.map_err(|e| LuaError::new("INVALID", format!("{func}: {e}")))?;
            let key = k.to_string().unwrap_or_default();
            let why = if key == "network" {
                "network selection needs the network.* kinds, which warden does not run".to_string()
            } else {
                format!("unknown option {key:?} (Wippy's spawn option is `network`)")
            };
            return Err(LuaError::new("INVALID", format!("{func}: {why}")));
        }
        Ok(self.clone())
    }
}

impl mlua::UserData for SpawnBuilder {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        for (name, link, monitor) in SPAWNS {
            let kind = SpawnKind {
                name,
                link,
                monitor,
            };
            methods.add_method(
                name,
                move |lua, this, (id, host, args): (mlua::Value, mlua::Value, Variadic<mlua::Value>)| {
                    spawn_call(lua, kind, &id, &host, &args, Some(this))
                },
            );
        }
        methods.add_async_method(
            "exec",
            |lua, this, (id, host, args): (mlua::Value, mlua::Value, Variadic<mlua::Value>)| {
                let this = this.clone();
                async move { exec_call(lua, id, host, args, Some(this)).await }
            },
        );
        methods.add_method("with_context", |lua, this, values: mlua::Value| {
            let r = this
                .with_values(&values, "spawner:with_context")
                .and_then(|b| ret(lua, b));
            finish(lua, r)
        });
        methods.add_method("with_options", |lua, this, opts: mlua::Value| {
            let r = this
                .with_options(&opts, "spawner:with_options")
                .and_then(|b| ret(lua, b));
            finish(lua, r)
        });
        methods.add_method(
            "with_actor",
            |_, this, a: mlua::UserDataRef<crate::lua::security::LuaActor>| {
                Ok(this.with_call_context(|c| {
                    c.actor = Some(a.id.clone());
                    c.actor_meta = Some(a.meta.clone());
                }))
            },
        );
        methods.add_method(
            "with_scope",
            |_, this, s: mlua::UserDataRef<crate::lua::security::LuaScope>| {
                Ok(this.with_call_context(|c| c.scope = Some(s.policies.clone())))
            },
        );
        methods.add_method("with_name", |lua, this, name: mlua::Value| {
            let r = string_arg(&name, "spawner:with_name: name").and_then(|n| {
                let mut next = this.clone();
                next.name = Some(n);
                ret(lua, next)
            });
            finish(lua, r)
        });
        methods.add_method(
            "with_message",
            |lua, this, (topic, payload): (mlua::Value, Variadic<mlua::Value>)| {
                let r = (|| {
                    let topic = string_arg(&topic, "spawner:with_message: topic")?;
                    if topic.starts_with('@') {
                        return Err(LuaError::new(
                            "INVALID",
                            format!("spawner:with_message: topic {topic:?} is reserved"),
                        ));
                    }
                    let payload = value::from_lua_multi(payload.iter()).map_err(|e| {
                        LuaError::new("INVALID", format!("spawner:with_message: payload {e}"))
                    })?;
                    let mut next = this.clone();
                    next.messages.push((topic, payload));
                    ret(lua, next)
                })();
                finish(lua, r)
            },
        );
    }
}

/// `process.exec` and a spawner's `exec`: spawns, waits for the exit, gives its result
/// (`value` or `nil, err`).
async fn exec_call(
    lua: Lua,
    id: mlua::Value,
    host: mlua::Value,
    args: Variadic<mlua::Value>,
    builder: Option<SpawnBuilder>,
) -> mlua::Result<MultiValue> {
    let started = current().map(|ctx| {
        let (tx, rx) = tokio::sync::oneshot::channel::<Exit>();
        let cb: crate::process::ExitCallback = Box::new(move |_, exit| {
            let _ = tx.send((**exit).clone());
        });
        let kind = SpawnKind {
            name: "exec",
            link: false,
            monitor: false,
        };
        spawn_built(&ctx, kind, &id, &host, &args, Some(cb), builder.as_ref()).map(|_| rx)
    });
    let rx = match started? {
        Ok(rx) => rx,
        Err(e) => return e.into_nil_err(&lua),
    };
    match rx.await {
        Ok(Exit::Normal(v)) => Ok(MultiValue::from_vec(vec![value::to_lua(&lua, &v)?])),
        Ok(Exit::Error(e)) => LuaError::new(e.kind, e.message).into_nil_err(&lua),
        Ok(Exit::Killed(e)) => LuaError::new("CANCELED", e).into_nil_err(&lua),
        Err(_) => {
            LuaError::new("INTERNAL", "process.exec: the process vanished").into_nil_err(&lua)
        }
    }
}

const SPAWNS: [(&str, bool, bool); 4] = [
    ("spawn", false, false),
    ("spawn_monitored", false, true),
    ("spawn_linked", true, false),
    ("spawn_linked_monitored", true, true),
];

/// Whether a name scope argument names the cluster: one of Wippy's scope numbers
/// (`process.registry.LOCAL` 0; `EVENTUAL` 1, `CONSISTENT` 2 and `STRONG` 3 are all kept in
/// the cluster's one key-value bucket, which is linearizable per name), nil for LOCAL, or
/// the older form `{scope = "local" | "cluster"}`.
/// A scope constant's number (`process.registry.EVENTUAL` is 1...), if it is one.
fn scope_number(scope: &mlua::Value) -> Option<i64> {
    match scope {
        mlua::Value::Integer(i) => Some(*i),
        mlua::Value::Number(n) => Some(*n as i64),
        _ => None,
    }
}

fn cluster_scope(scope: &mlua::Value, func: &str) -> Result<bool, LuaError> {
    let bad = |what: String| {
        LuaError::new(
            "INVALID",
            format!(
                "{func}: scope: {what} (process.registry.LOCAL, EVENTUAL, CONSISTENT or STRONG)"
            ),
        )
    };
    match scope {
        mlua::Value::Nil => Ok(false),
        mlua::Value::Integer(0) => Ok(false),
        mlua::Value::Integer(1..=3) => Ok(true),
        mlua::Value::Number(n) if *n == 0.0 => Ok(false),
        mlua::Value::Number(n) if [1.0, 2.0, 3.0].contains(n) => Ok(true),
        mlua::Value::Integer(i) => Err(bad(format!("unknown scope {i}"))),
        mlua::Value::Number(n) => Err(bad(format!("unknown scope {n}"))),
        mlua::Value::Table(t) => match t.get::<Option<String>>("scope").ok().flatten().as_deref() {
            None | Some("local") => Ok(false),
            Some("cluster") => Ok(true),
            Some(other) => Err(bad(format!("unknown scope {other:?}"))),
        },
        other => Err(bad(format!("expected a number, got {}", other.type_name()))),
    }
}

/// Builds the `process` table (frozen by the sandbox afterwards).
pub fn create(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "with_context",
        lua.create_function(|lua, values: mlua::Value| {
            let ctx = current()?;
            let r = SpawnBuilder::of(&ctx)
                .with_values(&values, "process.with_context")
                .and_then(|b| ret(lua, b));
            finish(lua, r)
        })?,
    )?;
    t.set(
        "with_options",
        lua.create_function(|lua, opts: mlua::Value| {
            let ctx = current()?;
            let r = SpawnBuilder::of(&ctx)
                .with_options(&opts, "process.with_options")
                .and_then(|b| ret(lua, b));
            finish(lua, r)
        })?,
    )?;
    t.set(
        "pid",
        lua.create_function(|lua, ()| lua.create_string(current()?.pid_str()))?,
    )?;
    // process.upgrade(id?, ...): go on with other code (or this entry's newest version)
    // in this process; on success it does not return (see `Driver::upgrade`)
    t.set(
        "upgrade",
        lua.create_async_function(|lua, args: Variadic<mlua::Value>| async move {
            let ctx = current()?;
            let mut args = args.into_iter();
            let current_entry = ctx.entry();
            let id = match args.next().unwrap_or(mlua::Value::Nil) {
                mlua::Value::Nil => Ok(current_entry.id.clone()),
                mlua::Value::String(s) => {
                    Id::resolve(&s.to_string_lossy(), &current_entry.id.namespace)
                }
                other => Err(format!("expected an entry id, found {}", other.type_name())),
            };
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    return LuaError::new("INVALID", format!("process.upgrade: {e}"))
                        .into_nil_err(&lua)
                }
            };
            let registry = ctx.node.registry();
            let Some(entry) = registry.get(&id).cloned() else {
                return LuaError::new("NOT_FOUND", format!("process.upgrade: no entry {id}"))
                    .into_nil_err(&lua);
            };
            if !matches!(
                entry.spec,
                crate::registry::EntrySpec::ProcessLua(_)
                    | crate::registry::EntrySpec::FunctionLua(_)
            ) {
                return LuaError::new(
                    "INVALID",
                    format!(
                        "process.upgrade: {id} is a {}, not a process.lua",
                        entry.kind
                    ),
                )
                .into_nil_err(&lua);
            }
            let mut values = Vec::new();
            for (i, a) in args.enumerate() {
                match value::from_lua(&a) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        return LuaError::new(
                            "INVALID",
                            format!("process.upgrade: argument {}: {e}", i + 2),
                        )
                        .into_nil_err(&lua)
                    }
                }
            }
            ctx.request_upgrade(entry, values);
            drop(ctx);
            // the process's driver drops this code before it would run again
            std::future::pending::<()>().await;
            Ok(MultiValue::new())
        })?,
    )?;
    // the id of the entry whose code this process runs (what `process.spawn` takes)
    t.set(
        "id",
        lua.create_function(|_, ()| {
            crate::lua::current_or("process.id").map(|c| c.entry().id.to_string())
        })?,
    )?;
    for (name, link, monitor) in SPAWNS {
        add_spawn(
            lua,
            &t,
            SpawnKind {
                name,
                link,
                monitor,
            },
        )?;
    }
    let general_send = lua.create_function(
        |lua, (d, topic, payload): (mlua::Value, mlua::Value, Variadic<mlua::Value>)| {
            let ctx = current()?;
            let r = (|| {
                let to = dest(&ctx, &d, "send")?;
                let topic = string_arg(&topic, "process.send: topic")?;
                let payload = value::from_lua_multi(payload.iter())
                    .map_err(|e| LuaError::new("INVALID", format!("process.send: payload {e}")))?;
                ctx.node
                    .send(Some(ctx.pid()), &to, topic, payload)
                    .map_err(|e| LuaError::new(e.kind(), format!("process.send: {e}")))?;
                ret(lua, true)
            })();
            finish(lua, r)
        },
    )?;
    t.set("send", crate::lua::send::fast_send(lua, general_send)?)?;
    t.set(
        "inbox",
        lua.create_function(|_, ()| current()?.inbox_userdata())?,
    )?;
    t.set(
        "events",
        lua.create_function(|_, ()| current()?.events_userdata())?,
    )?;
    t.set(
        "listen",
        lua.create_function(|lua, (topic, opts): (mlua::Value, Option<Table>)| {
            let ctx = current()?;
            let r = (|| {
                let topic = string_arg(&topic, "process.listen: topic")?;
                if topic.starts_with('@') {
                    return Err(LuaError::new(
                        "INVALID",
                        format!("process.listen: topic {topic:?} is reserved"),
                    ));
                }
                let message = opts
                    .and_then(|o| o.get::<Option<bool>>("message").ok().flatten())
                    .unwrap_or(false);
                let ud = ctx
                    .listen(&topic, message)
                    .map_err(|e| LuaError::new("INVALID", format!("process.listen: {e}")))?;
                ret(lua, ud)
            })();
            finish(lua, r)
        })?,
    )?;
    t.set(
        "unlisten",
        lua.create_function(|lua, ch: mlua::Value| {
            let ctx = current()?;
            let chan = match &ch {
                mlua::Value::UserData(ud) => ud.borrow::<LuaChannel>().ok().map(|c| c.0.clone()),
                _ => None,
            };
            let r = match chan {
                Some(chan) => ret(lua, ctx.unlisten(&chan)),
                None => Err(LuaError::new(
                    "INVALID",
                    format!(
                        "process.unlisten: expected the channel process.listen returned, got {}",
                        ch.type_name()
                    ),
                )),
            };
            finish(lua, r)
        })?,
    )?;
    type Rel = fn(&ProcCtx, &Pid) -> Result<(), LuaError>;
    let relations: [(&str, Rel); 4] = [
        ("monitor", |ctx, p| {
            ctx.node.monitor(ctx.pid(), p);
            Ok(())
        }),
        ("unmonitor", |ctx, p| {
            ctx.node.demonitor(ctx.pid(), p);
            Ok(())
        }),
        ("link", |ctx, p| {
            ctx.node
                .link(ctx.pid(), p)
                .map_err(|e| LuaError::new(e.kind(), format!("process.link: {e}")))
        }),
        ("unlink", |ctx, p| {
            ctx.node.unlink(ctx.pid(), p);
            Ok(())
        }),
    ];
    for (name, f) in relations {
        t.set(
            name,
            lua.create_function(move |lua, d: mlua::Value| {
                let ctx = current()?;
                let r = dest(&ctx, &d, name)
                    .and_then(|p| f(&ctx, &p))
                    .and_then(|()| ret(lua, true));
                finish(lua, r)
            })?,
        )?;
    }
    t.set(
        "set_options",
        lua.create_function(|lua, opts: mlua::Value| {
            let ctx = current()?;
            let r = (|| {
                let mlua::Value::Table(t) = &opts else {
                    return Err(LuaError::new(
                        "INVALID",
                        format!(
                            "process.set_options: expected a table like {{trap_links = true}}, got {}",
                            opts.type_name()
                        ),
                    ));
                };
                let flag = |name: &str| match t.get::<mlua::Value>(name) {
                    Ok(mlua::Value::Nil) => Ok(None),
                    Ok(mlua::Value::Boolean(b)) => Ok(Some(b)),
                    Ok(other) => Err(LuaError::new(
                        "INVALID",
                        format!(
                            "process.set_options: {name} must be a boolean, got {}",
                            other.type_name()
                        ),
                    )),
                    Err(e) => Err(LuaError::new("INVALID", e.to_string())),
                };
                let trap = flag("trap_links")?;
                let upgradable = flag("upgradable")?;
                if let Some(trap) = trap {
                    ctx.trap_links.set(trap);
                }
                if let Some(up) = upgradable {
                    ctx.me.set_upgradable(up);
                }
                ret(lua, true)
            })();
            finish(lua, r)
        })?,
    )?;
    t.set(
        "get_options",
        lua.create_function(|lua, ()| {
            let ctx = current()?;
            let t = lua.create_table()?;
            t.set("trap_links", ctx.trap_links.get())?;
            t.set("upgradable", ctx.me.is_upgradable())?;
            Ok(t)
        })?,
    )?;
    t.set(
        "cancel",
        lua.create_function(|lua, (d, reason): (mlua::Value, Option<String>)| {
            let ctx = current()?;
            let r = dest(&ctx, &d, "cancel").and_then(|p| {
                ctx.node
                    .cancel(Some(ctx.pid()), &p, reason)
                    .map_err(|e| LuaError::new(e.kind(), format!("process.cancel: {e}")))?;
                ret(lua, true)
            });
            finish(lua, r)
        })?,
    )?;
    t.set(
        "terminate",
        lua.create_function(|lua, d: mlua::Value| {
            let ctx = current()?;
            let r = dest(&ctx, &d, "terminate").and_then(|p| {
                ctx.node
                    .terminate(&p)
                    .map_err(|e| LuaError::new(e.kind(), format!("process.terminate: {e}")))?;
                ret(lua, true)
            });
            finish(lua, r)
        })?,
    )?;
    t.set(
        "exec",
        lua.create_async_function(
            |lua, (id, host, args): (mlua::Value, mlua::Value, Variadic<mlua::Value>)| {
                exec_call(lua, id, host, args, None)
            },
        )?,
    )?;
    let registry = lua.create_table()?;
    // register(name, pid?, {scope = "local" | "cluster"}?): a cluster name is one
    // process's in the whole cluster (see `cluster::names`)
    registry.set(
        "register",
        lua.create_async_function(
            |lua, (name, pid, scope): (mlua::Value, Option<String>, mlua::Value)| async move {
                let ctx = current()?;
                let parsed = (|| -> Result<(String, Pid, bool), LuaError> {
                    let name = string_arg(&name, "process.registry.register: name")?;
                    let pid = match pid {
                        None => ctx.pid().clone(),
                        Some(p) => ctx.node.parse_pid(&p).ok_or_else(|| {
                            LuaError::new(
                                "INVALID",
                                format!("process.registry.register: malformed pid {p:?}"),
                            )
                        })?,
                    };
                    let cluster = cluster_scope(&scope, "process.registry.register")?;
                    Ok((name, pid, cluster))
                })();
                let (name, pid, cluster) = match parsed {
                    Ok(v) => v,
                    Err(e) => return e.into_nil_err(&lua),
                };
                // `process.registry.register` on the name (a cluster scope: its suffix),
                // `process.registry.foreign` on a pid that is not the caller's
                if crate::lua::security::guarded() {
                    let action = match scope_number(&scope) {
                        Some(1) => "process.registry.register.eventual",
                        Some(2) => "process.registry.register.consistent",
                        Some(3) => "process.registry.register.strong",
                        _ => "process.registry.register",
                    };
                    let mut checks = vec![(action, name.clone())];
                    if pid != *ctx.pid() {
                        checks.push(("process.registry.foreign", pid.to_string()));
                    }
                    for (a, r) in checks {
                        if let Err(e) = crate::lua::security::check_now(a, &r) {
                            return LuaError::new(
                                e.kind,
                                format!("process.registry.register: {}", e.message),
                            )
                            .into_nil_err(&lua);
                        }
                    }
                }
                let done = if cluster {
                    if !ctx.node.in_cluster() {
                        return LuaError::new(
                            "INVALID",
                            "process.registry.register: a cluster scope (EVENTUAL, CONSISTENT, STRONG) needs a cluster (warden run --cluster)",
                        )
                        .into_nil_err(&lua);
                    }
                    ctx.node.register_cluster_name(&name, &pid).await
                } else {
                    ctx.node.register_name(&name, &pid)
                };
                match done {
                    Ok(()) => Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)])),
                    Err(e) => LuaError::new(e.kind(), format!("process.registry.register: {e}"))
                        .into_nil_err(&lua),
                }
            },
        )?,
    )?;
    registry.set(
        "lookup",
        lua.create_function(|lua, name: mlua::Value| {
            let ctx = current()?;
            let r = string_arg(&name, "process.registry.lookup: name").and_then(|n| {
                match ctx.node.lookup(&n) {
                    Some(p) => ret(lua, p.to_string()),
                    None => Err(LuaError::new(
                        "NOT_FOUND",
                        format!("process.registry.lookup: no process is registered as {n:?}"),
                    )),
                }
            });
            finish(lua, r)
        })?,
    )?;
    registry.set(
        "unregister",
        lua.create_function(|lua, (name, scope): (mlua::Value, mlua::Value)| {
            let ctx = current()?;
            let r = string_arg(&name, "process.registry.unregister: name").and_then(|n| {
                if crate::lua::security::guarded() {
                    let action = match scope_number(&scope) {
                        Some(1) => "process.registry.unregister.eventual",
                        Some(2) => "process.registry.unregister.consistent",
                        Some(3) => "process.registry.unregister.strong",
                        _ => "process.registry.unregister",
                    };
                    crate::lua::security::check_now(action, &n).map_err(|e| {
                        LuaError::new(
                            e.kind,
                            format!("process.registry.unregister: {}", e.message),
                        )
                    })?;
                }
                let local = || ctx.node.unregister_name(&n);
                let cluster = || ctx.node.unregister_cluster_name(&n);
                let freed = match scope {
                    // no scope: the name wherever this process registered it
                    mlua::Value::Nil => local() || cluster(),
                    ref s if cluster_scope(s, "process.registry.unregister")? => cluster(),
                    _ => local(),
                };
                ret(lua, freed)
            });
            finish(lua, r)
        })?,
    )?;
    // Wippy's scope constants (en/lua/core/process.md, "Scope"), with its numbers
    for (k, v) in [
        ("LOCAL", 0),
        ("EVENTUAL", 1),
        ("CONSISTENT", 2),
        ("STRONG", 3),
    ] {
        registry.set(k, v)?;
    }
    t.set("registry", registry)?;
    let event = lua.create_table()?;
    for k in ["EXIT", "LINK_DOWN", "CANCEL", "OUTDATED"] {
        event.set(k, k)?;
    }
    t.set("event", event)?;
    Ok(t)
}
