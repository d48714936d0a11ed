//! The registry actor: owns the loaded entries of a running app and answers lookups.
//!
//! Changes go through this actor (one writer); after each change it publishes an immutable
//! snapshot to its subscribers, so that hot paths (a spawn, a call) read the snapshot they
//! hold instead of asking the actor. Reads that are not hot ask the actor directly (the
//! CLI looks up the entry it runs); `Replace` swaps the registry of a running node: the
//! next spawn and the next call use the new entries (tests/functions.rs shows it).

use super::{Entry, Id, Registry};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;

/// Called with each new snapshot.
pub type Subscriber = Box<dyn Fn(Arc<Registry>) + Send + Sync>;

/// Messages of the registry actor.
pub enum RegistryMsg {
    /// The entry with this id.
    Get(Id, RpcReplyPort<Option<Arc<Entry>>>),
    /// The current snapshot.
    Snapshot(RpcReplyPort<Arc<Registry>>),
    /// Ids of all entries of a kind.
    OfKind(String, RpcReplyPort<Vec<Id>>),
    /// Replaces the registry (a reload); replies with the new version number.
    Replace(Box<Registry>, RpcReplyPort<u64>),
    /// Adds a subscriber to snapshot changes.
    Subscribe(Subscriber),
}

/// The registry actor.
pub struct RegistryActor;

/// Its state: the current snapshot, its version and the subscribers.
pub struct RegistryState {
    registry: Arc<Registry>,
    version: u64,
    subscribers: Vec<Subscriber>,
}

impl RegistryState {
    /// The initial state.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryState {
            registry,
            version: 1,
            subscribers: Vec::new(),
        }
    }
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RegistryState,
    ) -> Result<RegistryState, ActorProcessingErr> {
        tracing::debug!(
            entries = args.registry.entries.len(),
            "registry actor started"
        );
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Get(id, reply) => {
                let _ = reply.send(state.registry.get(&id).cloned());
            }
            RegistryMsg::Snapshot(reply) => {
                let _ = reply.send(state.registry.clone());
            }
            RegistryMsg::OfKind(kind, reply) => {
                let ids = state
                    .registry
                    .of_kind(&kind)
                    .map(|e| e.id.clone())
                    .collect();
                let _ = reply.send(ids);
            }
            RegistryMsg::Replace(r, reply) => {
                state.registry = Arc::new(*r);
                state.version += 1;
                for s in &state.subscribers {
                    s(state.registry.clone());
                }
                let _ = reply.send(state.version);
            }
            RegistryMsg::Subscribe(s) => {
                s(state.registry.clone());
                state.subscribers.push(s);
            }
        }
        Ok(())
    }
}
