//! The `system` module: what a process can learn about the runtime it runs on.
//!
//! `system.cluster.node()` -> this node's name; `system.cluster.members()` -> the live
//! nodes of its cluster, sorted, this one included (only this one outside a cluster);
//! `system.cluster.is_member(name)` -> whether node `name` is one of them now.

use super::current_or;
use crate::cluster::Cluster;
use crate::process::Node;
use mlua::{Lua, Table};
use std::sync::Arc;

fn node() -> mlua::Result<Arc<Node>> {
    Ok(current_or("system")?.node().clone())
}

fn members(node: &Node) -> Vec<String> {
    match node.ext::<Cluster>() {
        Some(c) => c.members(),
        None => vec![node.name.to_string()],
    }
}

/// Builds the module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let cluster = lua.create_table()?;
    cluster.set(
        "node",
        lua.create_function(|_, ()| Ok(node()?.name.to_string()))?,
    )?;
    cluster.set(
        "members",
        lua.create_function(|_, ()| Ok(members(&*node()?)))?,
    )?;
    cluster.set(
        "is_member",
        lua.create_function(|_, name: String| Ok(members(&*node()?).contains(&name)))?,
    )?;
    t.set("cluster", cluster)?;
    Ok(t)
}
