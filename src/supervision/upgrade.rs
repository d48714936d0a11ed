//! Following registry changes: what runs moves to the new version of the app.
//!
//! For each new registry version, [`Supervision::follow`]:
//! 1. swaps in the services and trees of the new version (checked already: a change that
//!    breaks them is refused before it is applied);
//! 2. stops the services whose entry was deleted or changed, dependents first, each
//!    through its `stop_timeout`, and removes the deleted ones;
//! 3. starts the new and changed services: a changed one that was active, a new one with
//!    `auto_start`, after what they require;
//! 4. restarts, one at a time, each active service whose code changed: its process entry,
//!    a library that entry imports (directly or through other libraries), or its
//!    supervisor entry; a service with `lifecycle.restart_on_change: false` keeps running
//!    the old code;
//! 5. asks every running tree to restart the children whose code changed, one at a time,
//!    each through its `shutdown` (`TreeMsg::Upgrade`; `restart_on_change: false` on a
//!    child keeps it);
//! 6. tells each process that opted in with `set_options{upgradable = true}` which of the
//!    ids its code depends on changed (an OUTDATED event).
//!
//! Processes spawned by code, not by services or trees, keep their code: the next spawn
//! gets the new one.

use super::service::{self, ServiceState};
use super::spec;
use super::{Supervision, TreeMsg};
use crate::registry::actor::Change;
use crate::registry::changes::Op;
use crate::registry::Id;
use ractor::Actor;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What following one change did, for its log line.
#[derive(Debug, Default, PartialEq)]
pub struct Followed {
    /// Services stopped for good (their entry was deleted).
    pub stopped: Vec<String>,
    /// Services and tree children restarted on new code (`tree/child` for a child).
    pub restarted: Vec<String>,
    /// Services started (new with `auto_start`).
    pub started: Vec<String>,
    /// What went wrong (a service that failed to start again...).
    pub errors: Vec<String>,
}

fn active(sup: &Supervision, id: &Id) -> bool {
    sup.status(id).is_some_and(|s| {
        matches!(
            s.state,
            ServiceState::Starting | ServiceState::Running | ServiceState::Failed
        ) && !s.gave_up
    })
}

impl Supervision {
    /// Moves services and trees to the registry version of `change` (see the module doc).
    pub async fn follow(self: &Arc<Self>, change: &Change) -> Followed {
        let mut out = Followed::default();
        let registry = &change.version.registry;
        let new = match spec::check(registry) {
            Ok(s) => Arc::new(s),
            Err(errs) => {
                out.errors
                    .extend(errs.iter().map(|e| format!("services unchanged: {e}")));
                return out;
            }
        };
        let old = self.specs();
        self.specs.store(new.clone());
        let touched: BTreeSet<&Id> = change.version.ops.iter().map(Op::id).collect();

        // services whose own entry went away or changed: stop them, dependents first
        let replaced: Vec<Id> = old
            .services
            .keys()
            .filter(|id| touched.contains(id))
            .cloned()
            .collect();
        let was_active: BTreeSet<Id> = replaced
            .iter()
            .filter(|id| active(self, id))
            .cloned()
            .collect();
        for level in old.levels(&replaced).into_iter().rev() {
            for id in level.iter().filter(|id| replaced.contains(id)) {
                if was_active.contains(id) {
                    let _ = self.stop(id).await;
                }
                if let Some((_, actor)) = self.services.remove(id) {
                    actor.stop(None);
                }
                if !new.services.contains_key(id) {
                    self.statuses.remove(id);
                    out.stopped.push(id.to_string());
                }
            }
        }
        // new and changed services get an actor of the new spec
        let fresh: Vec<Id> = new
            .services
            .keys()
            .filter(|id| touched.contains(id) || !self.services.contains_key(*id))
            .cloned()
            .collect();
        for id in &fresh {
            let args = service::ServiceArgs {
                spec: new.services[id].clone(),
                sup: Arc::downgrade(self),
            };
            match Actor::spawn(None, service::ServiceActor, args).await {
                Ok((r, _)) => {
                    self.services.insert(id.clone(), r);
                }
                Err(e) => out.errors.push(format!("service {id}: {e}")),
            }
        }
        let to_start: Vec<Id> = fresh
            .iter()
            .filter(|id| {
                was_active.contains(*id)
                    || (!old.services.contains_key(*id)
                        && new.services[*id].auto_start
                        && self.placed_here(&new.services[*id]))
            })
            .cloned()
            .collect();
        for level in new.levels(&to_start) {
            for id in level.iter().filter(|id| to_start.contains(id)) {
                match self.start_with_requires(id).await {
                    Ok(()) if was_active.contains(id) => out.restarted.push(id.to_string()),
                    Ok(()) => out.started.push(id.to_string()),
                    Err((_, e)) => out.errors.push(e),
                }
            }
        }

        // code that changed under running services and trees
        let code = Arc::new(crate::registry::changes::changed_code(
            registry,
            &change.version.ops,
        ));
        if code.is_empty() {
            return out;
        }
        for (id, s) in new.services.iter() {
            if fresh.contains(id) || !s.restart_on_change || !active(self, id) {
                continue;
            }
            let (spec::Target::Process(target) | spec::Target::Tree(target)) = &s.target;
            if !code.contains(target) {
                continue;
            }
            match self.restart(id).await {
                Ok(()) => out.restarted.push(id.to_string()),
                Err((_, e)) => out.errors.push(e),
            }
        }
        let trees: Vec<(Id, ractor::ActorRef<TreeMsg>)> = self
            .trees
            .iter()
            .map(|t| (t.key().clone(), t.value().clone()))
            .collect();
        for (id, tree) in trees {
            let changed = code.clone();
            // a tree stopped meanwhile (its parent restarted it) has nothing to do
            if let Ok(children) = ractor::call!(tree, TreeMsg::Upgrade, changed) {
                out.restarted
                    .extend(children.into_iter().map(|c| format!("{id}/{c}")));
            }
        }
        // processes that opted in hear that their code changed (Wippy's OUTDATED)
        self.node
            .outdate(|e| crate::registry::changes::code_sources(registry, &e.id, &code));
        out
    }
}
