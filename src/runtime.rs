//! The runtime: a loaded app running on a node.
//!
//! [`Runtime::start`] starts the registry actor, the process hosts declared in the app
//! (plus a default host when it declares none) and registers the process kinds this
//! build runs (their launchers). It is what the CLI and the integration tests drive.

use crate::functions::{CallContext, CallError};
use crate::lua;
use crate::process::{Exit, Host, Node, Pid, ProcessError, ProcessKind, SpawnOptions};
use crate::registry::actor::{
    self as registry_actor, Change, RegistryActor, RegistryMsg, RegistryState,
};
use crate::registry::changes::Op;
use crate::registry::{EntrySpec, HostSpec, Id, Registry};
use crate::supervision::{spec, Supervision};
use crate::value::Value;
use anyhow::Context as _;
use ractor::{Actor, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;

/// Id of the host created when an app declares no `process.host`.
pub const DEFAULT_HOST: &str = "warden:host";

/// The runtime's checks of a registry change beyond the loader's: services and trees
/// (as at start), and the WebAssembly entries the change makes compile and link (kept for
/// when the version is published, see `WasmRuntime::follow`).
fn validate_change(wasm: &crate::wasm::WasmRuntime, registry: &Registry) -> Vec<String> {
    let mut errors: Vec<String> = match spec::check(registry) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    };
    errors.extend(wasm.prepare(registry).iter().map(|e| e.to_string()));
    errors
}

/// Moves services and trees along with each new registry version, in version order, and
/// logs one line per version: what changed and what was restarted, stopped or started.
fn follow_changes(actor: &ActorRef<RegistryMsg>, sup: &Arc<Supervision>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
    actor
        .send_message(RegistryMsg::Subscribe(Box::new(move |c: &Change| {
            let _ = tx.send(c.clone());
        })))
        .context("subscribing to the registry")?;
    let sup = Arc::downgrade(sup);
    tokio::spawn(async move {
        while let Some(change) = rx.recv().await {
            let Some(sup) = sup.upgrade() else { break };
            let done = sup.follow(&change).await;
            let mut line = format!(
                "registry version {}: {}",
                change.version.id,
                describe_ops(&change.version.ops)
            );
            for (what, ids) in [
                ("restarted", &done.restarted),
                ("stopped", &done.stopped),
                ("started", &done.started),
            ] {
                if !ids.is_empty() {
                    line.push_str(&format!("; {what} {}", ids.join(", ")));
                }
            }
            if done.errors.is_empty() {
                tracing::info!("{line}");
            } else {
                tracing::error!("{line}; errors: {}", done.errors.join("; "));
            }
        }
    });
    Ok(())
}

/// "created a, b; updated c; deleted d" (or "no entry changed").
pub fn describe_ops(ops: &[Op]) -> String {
    let parts: Vec<String> = [
        ("created", "entry.create"),
        ("updated", "entry.update"),
        ("deleted", "entry.delete"),
    ]
    .iter()
    .filter_map(|(word, name)| {
        let ids: Vec<String> = ops
            .iter()
            .filter(|op| op.name() == *name)
            .map(|op| op.id().to_string())
            .collect();
        (!ids.is_empty()).then(|| format!("{word} {}", ids.join(", ")))
    })
    .collect();
    if parts.is_empty() {
        "no entry changed".to_string()
    } else {
        parts.join("; ")
    }
}

/// How to start a runtime (see [`Runtime::start_with`]).
#[derive(Clone, Debug)]
pub struct Options {
    /// The node's name, the first part of its pids.
    pub node_name: String,
    /// Keep the trees' log from the start (`warden test`).
    pub keep_tree_log: bool,
    /// Multiply services' retry delays by this (a test's `meta.time_scale`).
    pub time_scale: f64,
    /// Join the cluster at this NATS url (`--cluster`).
    pub cluster: Option<String>,
    /// The cluster's name (`--cluster-name`; over the `cluster.nats` entry's).
    pub cluster_name: Option<String>,
    /// Join a server on another machine without credentials or TLS
    /// (`--cluster-insecure`).
    pub cluster_insecure: bool,
    /// Refuse what a policy guards to code with no actor or no scope
    /// (`--security-strict`, Wippy's `security.strict_mode`).
    pub security_strict: bool,
    /// At shutdown, how long processes that got a CANCEL may take to end before they are
    /// terminated (Wippy's hosts wait 10 s).
    pub shutdown_grace: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_name: "local".into(),
            keep_tree_log: false,
            time_scale: 1.0,
            cluster: None,
            cluster_name: None,
            cluster_insecure: false,
            security_strict: false,
            shutdown_grace: std::time::Duration::from_secs(10),
        }
    }
}

/// A running app.
pub struct Runtime {
    node: Arc<Node>,
    sup: Arc<Supervision>,
    /// The services the Lua modules reach (the registry actor, supervision, ...).
    services: Arc<lua::Services>,
    /// The WebAssembly engine and every wasm entry compiled.
    wasm: Arc<crate::wasm::WasmRuntime>,
    /// The cluster this node joined, if any.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    registry: ActorRef<RegistryMsg>,
    registry_task: tokio::task::JoinHandle<()>,
    default_host: Id,
    shutdown_grace: std::time::Duration,
}

/// The reason of the CANCEL every process gets at shutdown.
pub const SHUTDOWN_REASON: &str = "shutdown";

/// The process kinds this build runs, by entry kind: Lua processes reach the runtime's
/// `services`, WebAssembly ones run code compiled by `wasm`. Every WebAssembly process
/// sees a CANCEL from its start; a Lua process once it takes its events channel.
pub fn process_kinds(
    services: &Arc<lua::Services>,
    wasm: &Arc<crate::wasm::WasmRuntime>,
) -> HashMap<&'static str, ProcessKind> {
    let lua = ProcessKind {
        launch: lua::launcher(services.clone()),
        sees_cancel: false,
    };
    let wasm = ProcessKind {
        launch: crate::wasm::process::launcher(wasm.clone()),
        sees_cancel: true,
    };
    HashMap::from([
        ("process.lua", lua.clone()),
        ("function.lua", lua),
        ("process.wasm", wasm),
    ])
}

impl Runtime {
    /// Starts an app: registry actor, hosts, default host, supervision (its `auto_start`
    /// services in dependency order). The node is named by `WARDEN_NODE` (`local` when
    /// unset).
    pub async fn start(registry: Registry) -> anyhow::Result<Runtime> {
        let node_name = std::env::var("WARDEN_NODE").unwrap_or_else(|_| "local".into());
        Runtime::start_as(registry, &node_name).await
    }

    /// [`Runtime::start`] with the node named `node_name` (the first part of its pids).
    pub async fn start_as(registry: Registry, node_name: &str) -> anyhow::Result<Runtime> {
        Runtime::start_with(
            registry,
            Options {
                node_name: node_name.to_string(),
                ..Options::default()
            },
        )
        .await
    }

    /// [`Runtime::start`] with `options`.
    pub async fn start_with(registry: Registry, options: Options) -> anyhow::Result<Runtime> {
        let node_name = options.node_name.as_str();
        let specs = spec::check(&registry).map_err(|errs| {
            anyhow::anyhow!(errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"))
        })?;
        let wasm = Arc::new(crate::wasm::compile_registry(&registry).map_err(|errs| {
            anyhow::anyhow!(errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"))
        })?);
        let registry = Arc::new(registry);
        let checker = wasm.clone();
        let state = RegistryState::new(registry.clone()).with_validator(Arc::new(
            move |r: &Registry, _: &[Op]| validate_change(&checker, r),
        ));
        let (actor, registry_task) = Actor::spawn(None, RegistryActor, state)
            .await
            .context("starting the registry actor")?;
        let services = lua::Services::new(registry_actor::Handle(actor.clone()));
        let node = Node::new(node_name, registry.clone(), process_kinds(&services, &wasm));
        node.strict_security.store(
            options.security_strict,
            std::sync::atomic::Ordering::Relaxed,
        );
        let weak = Arc::downgrade(&node);
        let wasm_follows = Arc::downgrade(&wasm);
        actor
            .send_message(RegistryMsg::Subscribe(Box::new(move |c: &Change| {
                // the new wasm code first, so a call that sees the new entry finds it
                if let Some(w) = wasm_follows.upgrade() {
                    w.follow(&c.version.registry);
                }
                if let Some(n) = weak.upgrade() {
                    n.set_registry(c.version.registry.clone());
                    crate::process::events::registry_changed(&n, c);
                }
            })))
            .context("subscribing to the registry")?;
        // --cluster URL, else the app's cluster.nats entry (its credentials and TLS apply
        // to either url)
        let entry = crate::cluster::config::from_registry(&registry).map_err(anyhow::Error::msg)?;
        let cluster = match (&options.cluster, entry) {
            (Some(url), Some(e)) => Some(crate::cluster::config::Config {
                url: url.clone(),
                ..e
            }),
            (Some(url), None) => Some(crate::cluster::config::Config::url(url)),
            (None, e) => e,
        };
        let cluster = match cluster {
            Some(mut config) => {
                if options.cluster_name.is_some() {
                    config.cluster_name = options.cluster_name.clone();
                }
                config.insecure |= options.cluster_insecure;
                Some(crate::cluster::join(&node, &config).await?)
            }
            None => None,
        };
        let mut default_host = None;
        for e in registry.of_kind("process.host") {
            if let EntrySpec::ProcessHost(spec) = &e.spec {
                let host = Host::new(e.id.clone(), spec.clone())
                    .with_context(|| format!("starting host {}", e.id))?;
                node.add_host(host);
                default_host.get_or_insert_with(|| e.id.clone());
            }
        }
        // a terminal.host runs the processes spawned on it (terminal programs: `io`
        // reads and writes the runtime's own stdin and stdout) on one worker
        for e in registry.of_kind("terminal.host") {
            let spec = HostSpec {
                workers: 1,
                ..HostSpec::default()
            };
            let host =
                Host::new(e.id.clone(), spec).with_context(|| format!("starting host {}", e.id))?;
            node.add_host(host);
        }
        let default_host = match default_host {
            Some(h) => h,
            None => {
                let id = Id::parse(DEFAULT_HOST).expect("valid id");
                node.add_host(
                    Host::new(id.clone(), HostSpec::default())
                        .context("starting the default host")?,
                );
                id
            }
        };
        node.functions.register(
            "function.lua",
            Arc::new(lua::function_call::LuaExecutor {
                node: Arc::downgrade(&node),
                services: services.clone(),
                default_host: node
                    .host(&default_host)
                    .context("the default host is missing")?,
            }),
        );
        node.functions.register(
            crate::functions::AS_PROCESS,
            Arc::new(lua::call_process::ProcessCallExecutor {
                node: Arc::downgrade(&node),
                default_host: default_host.clone(),
            }),
        );
        for kind in ["function.wat", "function.wasm"] {
            node.functions.register(
                kind,
                Arc::new(crate::wasm::WasmExecutor {
                    runtime: wasm.clone(),
                    node: Arc::downgrade(&node),
                }),
            );
        }
        if let Some(cluster) = &cluster {
            // this node's functions, for the nodes that do not have them, as the registry
            // changes
            let weak = Arc::downgrade(&node);
            let host = default_host.clone();
            let handler: crate::cluster::calls::CallHandler =
                Arc::new(move |target, args, context, timeout| {
                    let node = weak.upgrade();
                    let host = host.clone();
                    Box::pin(async move {
                        let node = node
                            .ok_or_else(|| CallError::new("UNAVAILABLE", "the runtime stopped"))?;
                        call_on(node, &host, target, args, context, timeout).await
                    })
                });
            cluster.serve_functions(&registry, handler).await?;
            let follows = Arc::downgrade(cluster);
            actor
                .send_message(RegistryMsg::Subscribe(Box::new(move |c: &Change| {
                    if let Some(cl) = follows.upgrade() {
                        cl.functions_changed(c.version.registry.clone());
                    }
                })))
                .context("subscribing to the registry")?;
        }
        let sup = Supervision::new(node.clone(), specs, default_host.clone()).await?;
        services.set_supervision(&sup);
        if options.keep_tree_log {
            sup.keep_log();
        }
        sup.set_time_scale(options.time_scale);
        sup.start_auto().await;
        follow_changes(&actor, &sup)?;
        tracing::info!(
            entries = registry.entries.len(),
            hosts = node.hosts().len(),
            services = sup.specs().services.len(),
            "runtime started"
        );
        Ok(Runtime {
            node,
            sup,
            services,
            wasm,
            cluster,
            registry: actor,
            registry_task: tokio::spawn(async move {
                let _ = registry_task.await;
            }),
            default_host,
            shutdown_grace: options.shutdown_grace,
        })
    }

    /// The node (process table, hosts, names).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The supervision system (services and trees).
    pub fn supervision(&self) -> &Arc<Supervision> {
        &self.sup
    }

    /// The registry actor.
    pub fn registry(&self) -> &ActorRef<RegistryMsg> {
        &self.registry
    }

    /// The services the Lua modules reach: the registry actor's handle, supervision,
    /// env storages' memory, `system.exit`'s request, the test runner's sink.
    pub fn services(&self) -> &Arc<lua::Services> {
        &self.services
    }

    /// The WebAssembly engine and the compiled wasm entries.
    pub fn wasm(&self) -> &Arc<crate::wasm::WasmRuntime> {
        &self.wasm
    }

    /// The cluster this node joined (`--cluster` or a `cluster.nats` entry), if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// The host used when none is named.
    pub fn default_host(&self) -> &Id {
        &self.default_host
    }

    /// Spawns a process entry with `args` on `host` (default host when None).
    pub fn spawn(
        &self,
        entry: &Id,
        host: Option<&Id>,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ProcessError> {
        self.node
            .spawn(entry, host.unwrap_or(&self.default_host), args, opts)
    }

    /// Runs a process entry to completion on the default host and returns how it ended.
    pub async fn exec(&self, entry: &Id, args: Vec<Value>) -> Result<Exit, ProcessError> {
        self.exec_on(entry, None, args).await
    }

    /// Runs a process entry to completion on `host` (the default host when None) and
    /// returns how it ended.
    pub async fn exec_on(
        &self,
        entry: &Id,
        host: Option<&Id>,
        args: Vec<Value>,
    ) -> Result<Exit, ProcessError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = SpawnOptions {
            on_exit: Some(Box::new(move |_, exit: &Arc<Exit>| {
                let _ = tx.send((**exit).clone());
            })),
            ..Default::default()
        };
        self.spawn(entry, host, args, opts)?;
        tokio::select! {
            exit = rx => Ok(exit.unwrap_or_else(|_| Exit::Killed("the runtime stopped".into()))),
            why = self.sup.fatal() => Ok(Exit::Error(format!("a supervision tree failed: {why}").into())),
        }
    }

    /// Stops every service, dependents first (part of `shutdown`).
    pub async fn stop_services(&self) {
        self.sup.stop_all().await;
    }

    /// Calls function `target` with `args` (from outside any process: the call runs on a
    /// worker of the default host) and returns its result.
    pub async fn call(
        &self,
        target: &str,
        args: Vec<Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Value, CallError> {
        let timeout = timeout.unwrap_or(crate::functions::DEFAULT_TIMEOUT);
        let context = Arc::new(CallContext::default());
        call_on(
            self.node.clone(),
            &self.default_host,
            target.to_string(),
            args,
            context,
            timeout,
        )
        .await
    }
}

/// Runs a call of function `target` on the least loaded worker of host `host_id`.
async fn call_on(
    node: Arc<Node>,
    host_id: &Id,
    target: String,
    args: Vec<Value>,
    context: Arc<CallContext>,
    timeout: std::time::Duration,
) -> Result<Value, CallError> {
    let host = node
        .host(host_id)
        .ok_or_else(|| CallError::new("UNAVAILABLE", "no host to run the call on"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let worker = host
        .load()
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| **l)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let sent = host.run_on_worker(worker, move || {
        tokio::task::spawn_local(async move {
            let r = lua::funcs::execute(node, target, args, context, timeout).await;
            let _ = tx.send(r);
        });
    });
    if !sent {
        return Err(CallError::new("UNAVAILABLE", "the host is stopped"));
    }
    rx.await
        .unwrap_or_else(|_| Err(CallError::new("UNAVAILABLE", "the runtime stopped")))
}

impl Runtime {
    /// Stops every process and host, then the registry actor.
    pub async fn shutdown(self) {
        self.sup.stop_all().await;
        self.sup.close();
        self.cancel_processes().await;
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        let node = self.node.clone();
        let _ = tokio::task::spawn_blocking(move || node.shutdown()).await;
        self.registry.stop(None);
        let _ = self.registry_task.await;
        tracing::info!("runtime stopped");
    }
}

impl Runtime {
    /// What Wippy's hosts do when they stop, after the services stopped: every process
    /// still running that can see a CANCEL (it took its events channel; every
    /// WebAssembly process) gets one, with reason `shutdown`, and up to the grace period
    /// to end; the rest, and those still running after it, are terminated with the node.
    async fn cancel_processes(&self) {
        let mut waiting = Vec::new();
        for (pid, _) in self.node.processes() {
            let Some(h) = self.node.process(&pid) else {
                continue;
            };
            if h.sees_cancel.load(std::sync::atomic::Ordering::Relaxed)
                && self
                    .node
                    .cancel(None, &pid, Some(SHUTDOWN_REASON.into()))
                    .is_ok()
            {
                waiting.push(pid);
            }
        }
        if waiting.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        while tokio::time::Instant::now() < deadline {
            waiting.retain(|p| self.node.process(p).is_some());
            if waiting.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tracing::warn!(
            processes = waiting.len(),
            "processes still running {:?} after a CANCEL at shutdown; terminating them",
            self.shutdown_grace
        );
    }
}
