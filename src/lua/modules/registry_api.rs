//! The `registry` module: reading the running app's entries and changing them.
//!
//! Reading: `registry.get(id)`, `registry.find(query)`, `registry.parse_id(id)` read the
//! snapshot the node runs on; `registry.snapshot()` / `snapshot_at(version)` give a
//! snapshot object (`:entries()`, `:get(id)`, `:find(query)`, `:namespace(ns)`,
//! `:version()`, `:changes()`) that stays as it is while the registry moves on.
//!
//! Versions: `registry.current_version()`, `registry.versions()` (oldest first),
//! `registry.history()` (`:versions()`, `:get_version(n)`, `:get_current()`); a version
//! object has `:id()`, `:previous()`, `:string()`, `:time()` (Unix seconds) and
//! `:changes()` (the operations that made it).
//!
//! Changing: `registry.changes()` (or `snapshot:changes()`) starts a changeset;
//! `:create(entry)`, `:update(entry)`, `:delete(id)` queue operations, `:ops()` lists them
//! and `:apply()` sends them to the registry actor, which validates the result as a load
//! does and answers with the new version, or `nil, err` (INVALID, every error in the
//! message, `err:details().errors` a list of lines) with nothing applied. An `update`
//! that leaves out `kind`, `meta` or `data` keeps the entry's. `registry.apply_version(v)`
//! makes a new version with the entries of kept version `v` (a rollback);
//! `registry.build_delta(a, b)` lists the operations from snapshot (or version) `a` to `b`.
//! Every applied change is published as events of system `registry` (see
//! `crate::process::events::registry_changed`).
//!
//! An entry reads as `{id = "ns:name", kind = ..., meta = {...}, data = {...}}`: `data`
//! holds the entry's own fields (everything but `name`, `kind` and `meta`; for an entry
//! whose only field is `data:`, that mapping). A query matches `.kind`, `.ns` and `.name`
//! against the entry's kind, namespace and name, and any other key against the entry's
//! `meta` field of that name (a `meta.` prefix is allowed); a string value may end in `*`
//! to match a prefix (`.kind = "function.*"`, `.ns = "app.*"`).

use crate::lua::errors::LuaError;
use crate::lua::{current_any, running};
use crate::registry::actor::{Handle, Version};
use crate::registry::changes::{self, EntryData, Op};
use crate::registry::finder::Query;
use crate::registry::{Entry, Id, Registry};
use crate::value::{self, Value};
use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataMethods};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex};

fn registry_now() -> Option<std::sync::Arc<crate::registry::Registry>> {
    running().map(|(node, _, _)| node.registry())
}

/// The entry as Lua sees it: `{id, kind, meta, data}`.
fn entry_table(lua: &Lua, e: &Entry) -> mlua::Result<Table> {
    data_table(lua, &EntryData::of(e))
}

fn data_table(lua: &Lua, d: &EntryData) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("id", d.id.to_string())?;
    t.set("kind", d.kind.as_str())?;
    let meta = match &d.meta {
        Json::Null => Value::Map(Vec::new()),
        m => value::from_json(m),
    };
    t.set("meta", value::to_lua(lua, &meta)?)?;
    t.set("data", value::to_lua(lua, &value::from_json(&d.data))?)?;
    Ok(t)
}

fn nil_err(lua: &Lua, kind: &'static str, message: String) -> mlua::Result<MultiValue> {
    LuaError::new(kind, message).into_nil_err(lua)
}

fn one(v: impl mlua::IntoLua, lua: &Lua) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

fn get_in(lua: &Lua, reg: &Registry, id: &str, what: &str) -> mlua::Result<MultiValue> {
    let parsed = match Id::parse(id) {
        Ok(i) => i,
        Err(e) => return nil_err(lua, "INVALID", format!("{what}: {e}")),
    };
    match reg.get(&parsed) {
        Some(e) => {
            // en/lua/core/registry.md, "Permissions": `registry.get` on the entry id
            if let Err(err) = crate::lua::security::check_now("registry.get", id) {
                return nil_err(lua, err.kind, format!("{what}: {}", err.message));
            }
            one(entry_table(lua, e)?, lua)
        }
        None => nil_err(lua, "NOT_FOUND", format!("{what}: no entry {id}")),
    }
}

/// A `find` query from Lua (see `registry::finder`); what it ignores is logged.
fn query(q: Option<Table>, what: &str) -> mlua::Result<Query> {
    let mut out = Vec::new();
    if let Some(query) = q {
        for pair in query.pairs::<String, mlua::Value>() {
            let (k, v) = pair?;
            let v = value::from_lua(&v)
                .map_err(|e| mlua::Error::runtime(format!("{what}: {k}: {e}")))?;
            let j = value::to_json(&v)
                .map_err(|e| mlua::Error::runtime(format!("{what}: {k}: {e}")))?;
            out.push((k, j));
        }
    }
    let q = Query::parse(out);
    for w in &q.warnings {
        tracing::warn!("{w}");
    }
    Ok(q)
}

fn list<'a>(lua: &Lua, entries: impl Iterator<Item = &'a Arc<Entry>>) -> mlua::Result<Table> {
    let out = lua.create_table()?;
    // `registry.get` also filters what `find` and `entries` give
    let guarded = crate::lua::security::guarded();
    let mut i = 0;
    for e in entries {
        if guarded && crate::lua::security::check_now("registry.get", &e.id.to_string()).is_err() {
            continue;
        }
        i += 1;
        out.raw_set(i, entry_table(lua, e)?)?;
    }
    Ok(out)
}

/// A version number, or a version object's: what `snapshot_at`, `apply_version` and
/// `history:snapshot_at` take.
fn version_id(v: &mlua::Value, what: &str) -> Result<u64, LuaError> {
    match v {
        mlua::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        mlua::Value::Number(n) if *n >= 0.0 && n.fract() == 0.0 => Ok(*n as u64),
        mlua::Value::UserData(u) => u
            .borrow::<LuaVersion>()
            .map(|v| v.0.id)
            .map_err(|_| LuaError::new("INVALID", format!("{what}: expected a version"))),
        other => Err(LuaError::new(
            "INVALID",
            format!("{what}: expected a version, found {}", other.type_name()),
        )),
    }
}

/// The registry actor of the runtime the calling code runs in.
fn handle() -> Option<Handle> {
    Some(current_any()?.services().registry.clone())
}

/// A version of the registry, as Lua sees it.
#[derive(Clone)]
struct LuaVersion(Arc<Version>);

impl UserData for LuaVersion {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, v, ()| Ok(v.0.id));
        m.add_method("string", |_, v, ()| Ok(v.0.id.to_string()));
        m.add_meta_method("__tostring", |_, v, ()| Ok(v.0.id.to_string()));
        m.add_meta_method("__eq", |_, a, b: AnyUserData| {
            Ok(b.borrow::<LuaVersion>().is_ok_and(|b| b.0.id == a.0.id))
        });
        m.add_method("time", |_, v, ()| {
            Ok(v.0
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0))
        });
        m.add_async_method("previous", |lua, v, ()| async move {
            let Some(prev) = v.0.previous else {
                return Ok(MultiValue::new());
            };
            match kept_version(prev).await {
                Some(p) => one(LuaVersion(p), &lua),
                None => nil_err(
                    &lua,
                    "NOT_FOUND",
                    format!("registry: version {prev} is no longer kept"),
                ),
            }
        });
        // en/lua/core/registry.md: the next version, or nil for the newest
        m.add_async_method("next", |lua, v, ()| async move {
            let next = kept_versions()
                .await
                .into_iter()
                .find(|k| k.previous == Some(v.0.id));
            match next {
                Some(n) => one(LuaVersion(n), &lua),
                None => Ok(MultiValue::from_vec(vec![mlua::Value::Nil])),
            }
        });
        m.add_method("changes", |lua, v, ()| ops_table(lua, &v.0.ops));
        m.add_method("snapshot", |_, v, ()| Ok(Snapshot(v.0.registry.clone())));
    }
}

/// The kept versions of the running node's registry.
async fn kept_versions() -> Vec<Arc<Version>> {
    match handle() {
        Some(h) => h.versions().await,
        None => Vec::new(),
    }
}

async fn kept_version(id: u64) -> Option<Arc<Version>> {
    kept_versions().await.into_iter().find(|v| v.id == id)
}

fn ops_table(lua: &Lua, ops: &[Op]) -> mlua::Result<Table> {
    let out = lua.create_table()?;
    for (i, op) in ops.iter().enumerate() {
        let t = lua.create_table()?;
        t.set("kind", op.name())?;
        match op {
            Op::Create(e) | Op::Update(e) => t.set("entry", data_table(lua, e)?)?,
            Op::Delete(id) => {
                let e = lua.create_table()?;
                e.set("id", id.to_string())?;
                t.set("entry", e)?;
            }
        }
        out.raw_set(i + 1, t)?;
    }
    Ok(out)
}

/// A snapshot: the entries of one version.
#[derive(Clone)]
struct Snapshot(Arc<Registry>);

impl UserData for Snapshot {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("entries", |lua, s, ()| list(lua, s.0.entries.values()));
        m.add_method("get", |lua, s, id: String| {
            get_in(lua, &s.0, &id, "snapshot:get")
        });
        m.add_method("find", |lua, s, q: Option<Table>| {
            let q = query(q, "snapshot:find")?;
            list(lua, s.0.entries.values().filter(|e| q.matches(e)))
        });
        m.add_method("namespace", |lua, s, ns: String| {
            list(lua, s.0.entries.values().filter(|e| e.id.namespace == ns))
        });
        m.add_async_method("version", |lua, s, ()| async move {
            let id = s.0.version;
            match kept_version(id).await {
                Some(v) => one(LuaVersion(v), &lua),
                None => nil_err(
                    &lua,
                    "NOT_FOUND",
                    format!("registry: version {id} is no longer kept"),
                ),
            }
        });
        m.add_method("changes", |_, s, ()| Ok(Changeset::new(s.0.clone())));
    }
}

/// A changeset: operations queued against a snapshot, applied together or not at all.
struct Changeset {
    base: Arc<Registry>,
    ops: Mutex<Vec<Op>>,
}

impl Changeset {
    fn new(base: Arc<Registry>) -> Changeset {
        Changeset {
            base,
            ops: Mutex::new(Vec::new()),
        }
    }

    fn push(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }
}

/// An entry id given as `"ns:name"`, `{ns = ..., name = ...}` or an entry table.
fn id_arg(v: &mlua::Value, what: &str) -> mlua::Result<Id> {
    let bad = |m: String| mlua::Error::runtime(format!("{what}: {m}"));
    match v {
        mlua::Value::String(s) => Id::parse(&s.to_string_lossy()).map_err(bad),
        mlua::Value::Table(t) => {
            if let Ok(id) = t.get::<mlua::Value>("id") {
                if !id.is_nil() {
                    return id_arg(&id, what);
                }
            }
            let ns: Option<String> = t.get("ns")?;
            let name: Option<String> = t.get("name")?;
            match (ns, name) {
                (Some(ns), Some(name)) => Ok(Id::new(ns, name)),
                _ => Err(bad(
                    "expected an id \"ns:name\" or {ns = ..., name = ...}".into()
                )),
            }
        }
        other => Err(bad(format!(
            "expected an id \"ns:name\", found {}",
            other.type_name()
        ))),
    }
}

fn json_field(t: &Table, field: &str, what: &str) -> mlua::Result<Option<Json>> {
    let v: mlua::Value = t.get(field)?;
    if v.is_nil() {
        return Ok(None);
    }
    let v =
        value::from_lua(&v).map_err(|e| mlua::Error::runtime(format!("{what}: {field}: {e}")))?;
    let j =
        value::to_json(&v).map_err(|e| mlua::Error::runtime(format!("{what}: {field}: {e}")))?;
    // Lua's empty table is an empty mapping here
    Ok(Some(match j {
        Json::Array(a) if a.is_empty() => Json::Object(Default::default()),
        j => j,
    }))
}

/// An entry table `{id, kind, meta, data}`; for an update, what is left out comes from
/// `existing`.
fn entry_arg(t: &Table, existing: Option<&Entry>, what: &str) -> mlua::Result<EntryData> {
    let id = id_arg(&mlua::Value::Table(t.clone()), what)?;
    let old = existing.map(EntryData::of);
    let kind: Option<String> = t.get("kind")?;
    let kind = match (kind, &old) {
        (Some(k), _) => k,
        (None, Some(o)) => o.kind.clone(),
        (None, None) => {
            return Err(mlua::Error::runtime(format!(
                "{what}: entry {id}: missing kind"
            )))
        }
    };
    let meta = match (json_field(t, "meta", what)?, &old) {
        (Some(m), _) => m,
        (None, Some(o)) => o.meta.clone(),
        (None, None) => Json::Null,
    };
    let data = match (json_field(t, "data", what)?, &old) {
        (Some(d), _) => d,
        (None, Some(o)) => o.data.clone(),
        (None, None) => Json::Null,
    };
    Ok(EntryData {
        id,
        kind,
        meta,
        data,
    })
}

fn apply_result(lua: &Lua, r: Result<Arc<Version>, Vec<String>>) -> mlua::Result<MultiValue> {
    match r {
        Ok(v) => one(LuaVersion(v), lua),
        Err(errors) => {
            let mut e = LuaError::new(
                "INVALID",
                format!(
                    "registry: change refused, nothing applied: {}",
                    errors.join("; ")
                ),
            );
            e.details = Some(Value::Map(vec![(
                Value::str("errors"),
                Value::Array(errors.into_iter().map(Value::str).collect()),
            )]));
            e.into_nil_err(lua)
        }
    }
}

impl UserData for Changeset {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_function("create", |_, (this, t): (AnyUserData, Table)| {
            let e = entry_arg(&t, None, "changes:create")?;
            this.borrow::<Changeset>()?.push(Op::Create(e));
            Ok(this)
        });
        m.add_function("update", |_, (this, t): (AnyUserData, Table)| {
            {
                let cs = this.borrow::<Changeset>()?;
                let id = id_arg(&mlua::Value::Table(t.clone()), "changes:update")?;
                let existing = cs.base.get(&id).cloned();
                let e = entry_arg(&t, existing.as_deref(), "changes:update")?;
                cs.push(Op::Update(e));
            }
            Ok(this)
        });
        m.add_function("delete", |_, (this, id): (AnyUserData, mlua::Value)| {
            let id = id_arg(&id, "changes:delete")?;
            this.borrow::<Changeset>()?.push(Op::Delete(id));
            Ok(this)
        });
        m.add_method("ops", |lua, cs, ()| {
            ops_table(lua, &cs.ops.lock().unwrap_or_else(|e| e.into_inner()))
        });
        m.add_async_method("apply", |lua, cs, ()| async move {
            // en/lua/core/registry.md, "Permissions": `registry.apply`, before anything
            if let Err(e) = crate::lua::security::check_now("registry.apply", "registry") {
                return e.into_nil_err(&lua);
            }
            let ops = cs.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(h) = handle() else {
                return nil_err(&lua, "UNAVAILABLE", "registry: no registry here".into());
            };
            apply_result(&lua, h.apply(ops).await)
        });
    }
}

/// A registry given as a snapshot, a version object or a version number.
async fn registry_arg(v: mlua::Value) -> Result<Arc<Registry>, String> {
    match &v {
        mlua::Value::UserData(u) => {
            if let Ok(s) = u.borrow::<Snapshot>() {
                return Ok(s.0.clone());
            }
            if let Ok(v) = u.borrow::<LuaVersion>() {
                return Ok(v.0.registry.clone());
            }
            Err("expected a snapshot or a version".into())
        }
        mlua::Value::Integer(n) => kept_version(*n as u64)
            .await
            .map(|v| v.registry.clone())
            .ok_or_else(|| format!("no version {n}")),
        other => Err(format!(
            "expected a snapshot or a version, found {}",
            other.type_name()
        )),
    }
}

/// The `registry` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, id: String| {
            let Some(reg) = registry_now() else {
                return nil_err(lua, "UNAVAILABLE", "registry.get: no registry here".into());
            };
            get_in(lua, &reg, &id, "registry.get")
        })?,
    )?;
    t.set(
        "find",
        lua.create_function(|lua, q: Option<Table>| {
            let q = query(q, "registry.find")?;
            match registry_now() {
                Some(reg) => list(lua, reg.entries.values().filter(|e| q.matches(e))),
                None => lua.create_table(),
            }
        })?,
    )?;
    t.set(
        "parse_id",
        lua.create_function(|lua, id: String| match Id::parse(&id) {
            Ok(i) => {
                let t = lua.create_table()?;
                t.set("ns", i.namespace.as_str())?;
                t.set("name", i.name.as_str())?;
                one(t, lua)
            }
            Err(e) => nil_err(lua, "INVALID", format!("registry.parse_id: {e}")),
        })?,
    )?;
    t.set(
        "snapshot",
        lua.create_function(|lua, ()| match registry_now() {
            Some(reg) => one(Snapshot(reg), lua),
            None => nil_err(
                lua,
                "UNAVAILABLE",
                "registry.snapshot: no registry here".into(),
            ),
        })?,
    )?;
    t.set(
        "snapshot_at",
        lua.create_async_function(|lua, v: mlua::Value| async move {
            let id = match version_id(&v, "registry.snapshot_at") {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            match kept_version(id).await {
                Some(v) => one(Snapshot(v.registry.clone()), &lua),
                None => nil_err(
                    &lua,
                    "NOT_FOUND",
                    format!("registry.snapshot_at: no version {id}"),
                ),
            }
        })?,
    )?;
    t.set(
        "current_version",
        lua.create_async_function(|lua, ()| async move {
            match kept_versions().await.pop() {
                Some(v) => one(LuaVersion(v), &lua),
                None => nil_err(&lua, "UNAVAILABLE", "registry: no registry here".into()),
            }
        })?,
    )?;
    t.set(
        "versions",
        lua.create_async_function(|lua, ()| async move {
            let out = lua.create_table()?;
            for (i, v) in kept_versions().await.into_iter().enumerate() {
                out.raw_set(i + 1, LuaVersion(v))?;
            }
            Ok(out)
        })?,
    )?;
    t.set("history", lua.create_function(|_, ()| Ok(History))?)?;
    t.set(
        "changes",
        lua.create_function(|lua, ()| match registry_now() {
            Some(reg) => one(Changeset::new(reg), lua),
            None => nil_err(
                lua,
                "UNAVAILABLE",
                "registry.changes: no registry here".into(),
            ),
        })?,
    )?;
    t.set(
        "apply_version",
        lua.create_async_function(|lua, v: mlua::Value| async move {
            let id = match version_id(&v, "registry.apply_version") {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            if let Err(e) = crate::lua::security::check_now("registry.apply_version", "registry") {
                return e.into_nil_err(&lua);
            }
            let Some(h) = handle() else {
                return nil_err(&lua, "UNAVAILABLE", "registry: no registry here".into());
            };
            apply_result(&lua, h.apply_version(id).await)
        })?,
    )?;
    t.set(
        "build_delta",
        lua.create_async_function(|lua, (a, b): (mlua::Value, mlua::Value)| async move {
            // two lists of entries (en/lua/core/registry.md), or snapshots / versions
            if let (mlua::Value::Table(from), mlua::Value::Table(to)) = (&a, &b) {
                let list = |t: &Table, which: &str| -> mlua::Result<Vec<EntryData>> {
                    let what = format!("registry.build_delta: {which}");
                    t.sequence_values::<Table>()
                        .map(|e| entry_arg(&e?, None, &what))
                        .collect()
                };
                let ops = match (list(from, "from"), list(to, "to")) {
                    (Ok(f), Ok(t)) => changes::delta_of(&f, &t),
                    (Err(e), _) | (_, Err(e)) => {
                        return nil_err(&lua, "INVALID", crate::lua::errors::message(&e))
                    }
                };
                return one(ops_table(&lua, &ops)?, &lua);
            }
            let from = match registry_arg(a).await {
                Ok(r) => r,
                Err(e) => {
                    return nil_err(&lua, "INVALID", format!("registry.build_delta: from: {e}"))
                }
            };
            let to = match registry_arg(b).await {
                Ok(r) => r,
                Err(e) => {
                    return nil_err(&lua, "INVALID", format!("registry.build_delta: to: {e}"))
                }
            };
            one(ops_table(&lua, &changes::delta(&from, &to))?, &lua)
        })?,
    )?;
    Ok(t)
}

/// `registry.history()`: the kept versions.
struct History;

impl UserData for History {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method("versions", |lua, _, ()| async move {
            let out = lua.create_table()?;
            for (i, v) in kept_versions().await.into_iter().enumerate() {
                out.raw_set(i + 1, LuaVersion(v))?;
            }
            Ok(out)
        });
        m.add_async_method("get_version", |lua, _, id: u64| async move {
            match kept_version(id).await {
                Some(v) => one(LuaVersion(v), &lua),
                None => nil_err(&lua, "NOT_FOUND", format!("registry: no version {id}")),
            }
        });
        m.add_async_method("get_current", |lua, _, ()| async move {
            match kept_versions().await.pop() {
                Some(v) => one(LuaVersion(v), &lua),
                None => nil_err(&lua, "UNAVAILABLE", "registry: no registry here".into()),
            }
        });
        // en/lua/core/registry.md, "History": the snapshot of a version (object or number)
        m.add_async_method("snapshot_at", |lua, _, v: mlua::Value| async move {
            let id = match version_id(&v, "history:snapshot_at") {
                Ok(id) => id,
                Err(e) => return e.into_nil_err(&lua),
            };
            match kept_version(id).await {
                Some(v) => one(Snapshot(v.registry.clone()), &lua),
                None => nil_err(&lua, "NOT_FOUND", format!("registry: no version {id}")),
            }
        });
    }
}
