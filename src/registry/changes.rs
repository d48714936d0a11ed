//! Changes to a running registry: the operations of a changeset, the form code reads and
//! writes entries in, the difference of two registries, and whose code a change touched.
//!
//! Code sees an entry as `{id = "ns:name", kind, meta, data}`. `data` holds the entry's own
//! fields (everything but `name`, `kind` and `meta`); for an entry whose only field is
//! `data:` (a `registry.entry`), it is that mapping. [`EntryData::mapping`] turns such a
//! form back into the mapping a YAML file would hold, so a changeset's entries are
//! validated by the loader exactly as loaded entries are.

use super::{Entry, Id, Registry};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// An entry as code reads and writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryData {
    /// `ns:name`.
    pub id: Id,
    /// The kind, e.g. `function.lua`.
    pub kind: String,
    /// The `meta` mapping (Null when absent).
    pub meta: Json,
    /// The kind's fields (see the module's doc).
    pub data: Json,
}

impl EntryData {
    /// The form of a loaded entry.
    pub fn of(e: &Entry) -> EntryData {
        let mut fields: serde_json::Map<String, Json> = match &e.raw {
            Json::Object(m) => m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "name" | "kind" | "meta"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => serde_json::Map::new(),
        };
        let data = if fields.len() == 1 && fields.contains_key("data") {
            fields.remove("data").unwrap_or(Json::Null)
        } else {
            Json::Object(fields)
        };
        EntryData {
            id: e.id.clone(),
            kind: e.kind.clone(),
            meta: e.meta.clone(),
            data,
        }
    }

    /// The entry mapping a YAML file would hold: `name`, `kind`, `meta`, and the fields of
    /// `data` (for a `registry.entry`, or when `data` is not a mapping: `data: ...`).
    pub fn mapping(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), Json::String(self.id.name.clone()));
        m.insert("kind".into(), Json::String(self.kind.clone()));
        if !self.meta.is_null() {
            m.insert("meta".into(), self.meta.clone());
        }
        match &self.data {
            Json::Null => {}
            Json::Object(fields) if self.kind != "registry.entry" => {
                for (k, v) in fields {
                    if !matches!(k.as_str(), "name" | "kind" | "meta") {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            other => {
                m.insert("data".into(), other.clone());
            }
        }
        Json::Object(m)
    }
}

/// One operation of a changeset.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Adds an entry (its id must be free).
    Create(EntryData),
    /// Replaces an entry (its id must exist).
    Update(EntryData),
    /// Removes an entry (its id must exist).
    Delete(Id),
}

impl Op {
    /// The entry the operation is about.
    pub fn id(&self) -> &Id {
        match self {
            Op::Create(e) | Op::Update(e) => &e.id,
            Op::Delete(id) => id,
        }
    }

    /// `entry.create`, `entry.update` or `entry.delete` (also the kind of its event).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create(_) => "entry.create",
            Op::Update(_) => "entry.update",
            Op::Delete(_) => "entry.delete",
        }
    }
}

/// The operations that turn `from` into `to`, in id order: creations, updates of entries
/// whose fields differ, deletions.
pub fn delta(from: &Registry, to: &Registry) -> Vec<Op> {
    let mut ops = Vec::new();
    for (id, e) in &to.entries {
        match from.entries.get(id) {
            None => ops.push(Op::Create(EntryData::of(e))),
            Some(old) if !same(old, e) => ops.push(Op::Update(EntryData::of(e))),
            Some(_) => {}
        }
    }
    for id in from.entries.keys() {
        if !to.entries.contains_key(id) {
            ops.push(Op::Delete(id.clone()));
        }
    }
    ops
}

/// The operations that turn the entries `from` into the entries `to` (lists of entries as
/// code writes them, en/lua/core/registry.md "Build Delta"): a create for each id only in
/// `to`, an update for each id in both whose kind, meta or data differ (in `to`'s order),
/// then a delete for each id only in `from`. Meta and data absent or empty count as equal.
pub fn delta_of(from: &[EntryData], to: &[EntryData]) -> Vec<Op> {
    let empty = |j: &Json| match j {
        Json::Null => true,
        Json::Object(m) => m.is_empty(),
        _ => false,
    };
    let same_json = |a: &Json, b: &Json| a == b || (empty(a) && empty(b));
    let mut ops = Vec::new();
    for e in to {
        match from.iter().find(|o| o.id == e.id) {
            None => ops.push(Op::Create(e.clone())),
            Some(o)
                if o.kind != e.kind
                    || !same_json(&o.meta, &e.meta)
                    || !same_json(&o.data, &e.data) =>
            {
                ops.push(Op::Update(e.clone()))
            }
            Some(_) => {}
        }
    }
    for o in from {
        if !to.iter().any(|e| e.id == o.id) {
            ops.push(Op::Delete(o.id.clone()));
        }
    }
    ops
}

/// Whether two versions of an entry are the same (the same `Arc`, or equal fields and the
/// same source text).
pub fn same(a: &Arc<Entry>, b: &Arc<Entry>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    if a.kind != b.kind || a.raw != b.raw || a.meta != b.meta {
        return false;
    }
    // a `file://` source may have changed on disk while the fields did not
    match (&a.spec, &b.spec) {
        (super::EntrySpec::ProcessLua(x), super::EntrySpec::ProcessLua(y))
        | (super::EntrySpec::FunctionLua(x), super::EntrySpec::FunctionLua(y))
        | (super::EntrySpec::LibraryLua(x), super::EntrySpec::LibraryLua(y)) => {
            x.source == y.source
        }
        (super::EntrySpec::Wasm(x), super::EntrySpec::Wasm(y)) => match (&x.source, &y.source) {
            (
                super::WasmSource::Binary { sha256: h1, .. },
                super::WasmSource::Binary { sha256: h2, .. },
            ) => h1 == h2,
            (super::WasmSource::Wat { text: t1 }, super::WasmSource::Wat { text: t2 }) => t1 == t2,
            _ => false,
        },
        _ => true,
    }
}

/// The entries whose code `ops` changed: updated and deleted entries, and (transitively)
/// the Lua entries that import one of them.
pub fn changed_code(registry: &Registry, ops: &[Op]) -> BTreeSet<Id> {
    let mut changed: BTreeSet<Id> = ops
        .iter()
        .filter(|op| matches!(op, Op::Update(_) | Op::Delete(_)))
        .map(|op| op.id().clone())
        .collect();
    // libraries: whoever imports a changed entry changed too, until nothing new is found
    loop {
        let more: Vec<Id> = registry
            .entries
            .values()
            .filter(|e| !changed.contains(&e.id))
            .filter(|e| {
                e.spec
                    .lua()
                    .is_some_and(|l| l.imports.iter().any(|(_, t)| changed.contains(t)))
            })
            .map(|e| e.id.clone())
            .collect();
        if more.is_empty() {
            return changed;
        }
        changed.extend(more);
    }
}

/// Which of `changed` the code of entry `id` depends on: the entry itself and the
/// libraries it imports, directly or through other libraries (Wippy's OUTDATED
/// `sources`).
pub fn code_sources(registry: &Registry, id: &Id, changed: &BTreeSet<Id>) -> Vec<Id> {
    let mut seen: BTreeSet<Id> = BTreeSet::new();
    let mut todo = vec![id.clone()];
    let mut out = Vec::new();
    while let Some(next) = todo.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        if changed.contains(&next) {
            out.push(next.clone());
        }
        if let Some(l) = registry.get(&next).and_then(|e| e.spec.lua()) {
            todo.extend(l.imports.iter().map(|(_, t)| t.clone()));
        }
    }
    out
}
