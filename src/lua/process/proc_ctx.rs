//! A Lua process's state as the Lua API sees it ([`ProcCtx`]): its pid, its entry, its
//! inbox, events and topic channels, its coroutines and its limits; what its task holds
//! back from a full channel.

use crate::lua::channel::Chan;
use crate::lua::preempt::RunState;
use crate::lua::{channel, errors, funcs, tasks};
use crate::process::{Exit, Message, Node, Pid, ProcessHandle, Signal};
use crate::registry::Entry;
use crate::value::{self, Value};
use mlua::{AnyUserData, Lua, Table};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where a process last sent (see [`ProcCtx::last_dest`]).
pub(crate) struct LastDest {
    pub text: Box<[u8]>,
    pub pid: Pid,
    pub handle: std::sync::Weak<crate::process::ProcessHandle>,
}

/// Messages routed into Lua channels per poll of a process, before it lets others run.
pub(in crate::lua) const MESSAGES_PER_POLL: usize = 256;
/// A Lua channel fed from the mailbox gets at most this many unread messages; the rest
/// wait in the (bounded) mailbox, so a flood is refused to its senders.
pub(in crate::lua) const ROUTE_AHEAD: usize = 64;

pub(in crate::lua) struct Listener {
    pub(in crate::lua) chan: Chan,
    pub(in crate::lua) ud: AnyUserData,
    pub(in crate::lua) message: bool,
}

/// A sender's pid and its text, kept for the next message from it.
pub(in crate::lua) type KeptSender = (Pid, Rc<str>);

/// A process's topic listeners (`process.listen`) by topic. Most processes have none: the
/// table is allocated with the first (an empty one inline took 40 bytes of every process).
#[derive(Default)]
pub(in crate::lua) struct Listeners(Option<Box<rustc_hash::FxHashMap<String, Listener>>>);

impl Listeners {
    pub(in crate::lua) fn get(&self, topic: &str) -> Option<&Listener> {
        self.0.as_ref()?.get(topic)
    }

    pub(in crate::lua) fn contains_key(&self, topic: &str) -> bool {
        self.get(topic).is_some()
    }

    pub(in crate::lua) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    pub(in crate::lua) fn insert(&mut self, topic: String, listener: Listener) {
        self.0
            .get_or_insert_with(Default::default)
            .insert(topic, listener);
    }

    pub(in crate::lua) fn iter(&self) -> impl Iterator<Item = (&String, &Listener)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    pub(in crate::lua) fn remove(&mut self, topic: &str) -> Option<Listener> {
        self.0.as_mut()?.remove(topic)
    }
}

/// Messages a process's task took from its mailbox while the channel they go to (the
/// inbox, or a topic's listener) had [`ROUTE_AHEAD`] unread values, in the order they
/// arrived: one queue for the inbox, one per listened topic. Holding them here instead of
/// stopping at the first full channel means a topic nobody reads never holds back one
/// that is read (as Erlang's selective receive never does). They count against the
/// mailbox's limit (`ProcessHandle::add_parked`), so a flood is still refused to its
/// senders.
#[derive(Default)]
pub(in crate::lua) struct Parked {
    pub(in crate::lua) inbox: VecDeque<Message>,
    pub(in crate::lua) topics: HashMap<String, VecDeque<Message>>,
}

/// What `process.upgrade` asked for: the entry to run next and its arguments.
pub(in crate::lua) type Upgrade = (Arc<Entry>, Vec<Value>);

/// What the Lua API needs to know about the process it is called from.
pub(crate) struct ProcCtx {
    pub node: Arc<Node>,
    /// The runtime's services it reaches.
    pub services: Arc<crate::lua::Services>,
    pub me: Arc<ProcessHandle>,
    /// The entry whose code runs (another one after `process.upgrade`).
    pub(in crate::lua) entry: RefCell<Arc<Entry>>,
    pub lua: Lua,
    /// The environment of that code (its modules and imports).
    pub(in crate::lua) env: RefCell<Table>,
    /// Set by `process.upgrade`: the code to run next in this process, with its arguments.
    pub(in crate::lua) upgrade: RefCell<Option<Box<Upgrade>>>,
    /// Whether `upgrade` holds a request (one load per poll on the hot path).
    pub(in crate::lua) upgrade_asked: Cell<bool>,
    pub(in crate::lua) inbox: Chan,
    /// `process.events()`'s channel, made by the first event or the first call (most
    /// processes never have either: 150 bytes less an idle process).
    pub(in crate::lua) events: std::cell::OnceCell<Chan>,
    pub(in crate::lua) inbox_ud: RefCell<Option<AnyUserData>>,
    pub(in crate::lua) events_ud: RefCell<Option<AnyUserData>>,
    pub(in crate::lua) listeners: RefCell<Listeners>,
    /// Messages taken from the mailbox while their channel was full (allocated when the
    /// first one is held back: most processes never hold one).
    pub(in crate::lua) parked: RefCell<Option<Box<Parked>>>,
    /// How many messages `parked` holds (read on every routed message).
    pub(in crate::lua) parked_count: Cell<u32>,
    /// Its timer tasks (aborted when it ends).
    pub(crate) tasks: tasks::TaskSet,
    /// It subscribed to events (its subscriptions end when it ends).
    pub(crate) subscribed: Cell<bool>,
    pub trap_links: Cell<bool>,
    pub(in crate::lua) spawned: RefCell<Vec<mlua::Thread>>,
    pub(in crate::lua) run: RunState,
    /// The sender of the last message received from another process, and its pid text
    /// (boxed: a process that never hears from another keeps 8 bytes, not 48).
    pub(in crate::lua) last_from: RefCell<Option<Box<KeptSender>>>,
    /// The pid text this process last sent to, the pid it names and, for a local one,
    /// its handle (weak: a process that ended is let go; `process.send`'s fast path: a
    /// process mostly sends to the same few pids, and a pid never names another process).
    pub(crate) last_dest: RefCell<Option<Box<LastDest>>>,
    /// The call context of this process's `funcs.call`s without context values.
    pub(crate) call_context: std::cell::OnceCell<Arc<crate::functions::CallContext>>,
    /// Its `funcs.call`s that wait for a result (dropped with the process).
    pub(crate) pending: funcs::PendingCalls,
    /// Where it reports the end of its start to the supervisor that waits (taken once).
    pub(in crate::lua) start: RefCell<Option<crate::process::StartNotice>>,
    /// Set by `supervisor.ignore()`: the process ends normally with `ignore` at once.
    pub(in crate::lua) ignored: Cell<bool>,
}

impl ProcCtx {
    /// The context of a process (or of a function call that became one) running `entry`
    /// (whose limits are `limits`) in `env`: its call context is `context`, with itself as
    /// the actor if that names none.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::lua) fn new(
        node: Arc<Node>,
        services: Arc<crate::lua::Services>,
        me: Arc<ProcessHandle>,
        entry: Arc<Entry>,
        lua: Lua,
        env: Table,
        context: Option<Arc<crate::functions::CallContext>>,
        start: Option<crate::process::StartNotice>,
        limits: &crate::lua::Limits,
    ) -> ProcCtx {
        // a context given at spawn, with this process as the actor if it names none
        let call_context = match context {
            Some(c) if c.actor.is_none() => {
                std::cell::OnceCell::from(Arc::new(crate::functions::CallContext {
                    actor: Some(me.text.to_string()),
                    actor_meta: None,
                    values: c.values.clone(),
                    scope: c.scope.clone(),
                    from_cluster: c.from_cluster,
                }))
            }
            Some(c) => std::cell::OnceCell::from(c),
            None => std::cell::OnceCell::new(),
        };
        ProcCtx {
            node,
            services,
            me,
            entry: RefCell::new(entry),
            lua,
            env: RefCell::new(env),
            upgrade: RefCell::new(None),
            upgrade_asked: Cell::new(false),
            inbox: Chan::unbounded(),
            events: std::cell::OnceCell::new(),
            inbox_ud: RefCell::new(None),
            events_ud: RefCell::new(None),
            listeners: RefCell::new(Default::default()),
            parked: RefCell::new(None),
            parked_count: Cell::new(0),
            tasks: tasks::TaskSet::default(),
            subscribed: Cell::new(false),
            trap_links: Cell::new(false),
            spawned: RefCell::new(Vec::new()),
            run: RunState::with(limits),
            last_from: RefCell::new(None),
            last_dest: RefCell::new(None),
            call_context,
            pending: funcs::PendingCalls::default(),
            start: RefCell::new(start),
            ignored: Cell::new(false),
        }
    }

    pub(in crate::lua) fn pid(&self) -> &Pid {
        &self.me.pid
    }

    /// Its pid as text.
    pub(crate) fn pid_str(&self) -> &str {
        &self.me.text
    }

    /// Lets go of what the process holds outside its Lua values when it ends: its timer
    /// tasks and its event subscriptions.
    pub(crate) fn release(&self) {
        self.tasks.abort_all();
        if self.subscribed.get() {
            crate::process::events::unsubscribe_all(&self.node, &self.me.pid);
        }
    }

    /// Reports the end of its start to the supervisor waiting for it (`supervisor.started`
    /// and `supervisor.ignore`); false when none waits (any more).
    pub(crate) fn ack_start(&self, how: crate::process::Started) -> bool {
        if how == crate::process::Started::Ignore {
            self.ignored.set(true);
        }
        match self.start.borrow_mut().take() {
            Some(n) => {
                n.send(how);
                true
            }
            None => false,
        }
    }

    /// The events channel (made on first use).
    pub(in crate::lua) fn events(&self) -> &Chan {
        self.events.get_or_init(Chan::unbounded)
    }

    pub(in crate::lua) fn inbox_userdata(&self) -> mlua::Result<AnyUserData> {
        cached_userdata(&self.lua, &self.inbox_ud, &self.inbox)
    }

    pub(in crate::lua) fn events_userdata(&self) -> mlua::Result<AnyUserData> {
        self.me.sees_cancel.store(true, Ordering::Relaxed);
        cached_userdata(&self.lua, &self.events_ud, self.events())
    }

    /// The channel of `topic`'s messages: the one already listening (a second `listen`
    /// returns it, whatever its `message` option), or a new one, which first gets the
    /// messages of that topic waiting in the inbox, in the order they arrived.
    pub(in crate::lua) fn listen(&self, topic: &str, message: bool) -> Result<AnyUserData, String> {
        if let Some(existing) = self.listeners.borrow().get(topic) {
            return Ok(existing.ud.clone());
        }
        // no borrow of the listeners while Lua allocates (a collection may run finalizers)
        let chan = Chan::unbounded();
        let ud = channel::to_userdata(&self.lua, chan.clone()).map_err(|e| e.to_string())?;
        for m in self.inbox.take_messages(topic) {
            let item = if message {
                channel::Item::Message(m)
            } else {
                self.payload_item(&m.payload).map_err(|e| e.to_string())?
            };
            chan.push_polled(item, None);
        }
        let held: Vec<Message> = {
            let mut p = self.parked.borrow_mut();
            if let Some(p) = p
                .as_mut()
                .filter(|p| p.inbox.iter().any(|m| m.topic == topic))
            {
                let (held, rest): (VecDeque<Message>, VecDeque<Message>) =
                    std::mem::take(&mut p.inbox)
                        .into_iter()
                        .partition(|m| m.topic == topic);
                p.inbox = rest;
                held.into()
            } else {
                Vec::new()
            }
        };
        if !held.is_empty() {
            self.count_parked(-(held.len() as isize));
        }
        for m in held {
            let item = self.listener_item(m, message).map_err(|e| e.to_string())?;
            chan.push_polled(item, None);
        }
        self.listeners.borrow_mut().insert(
            topic.to_string(),
            Listener {
                chan,
                ud: ud.clone(),
                message,
            },
        );
        Ok(ud)
    }

    pub(in crate::lua) fn unlisten(&self, ch: &Chan) -> bool {
        let mut l = self.listeners.borrow_mut();
        let topic = l
            .iter()
            .find(|(_, v)| v.chan.same(ch))
            .map(|(k, _)| k.clone());
        match topic {
            Some(t) => {
                if let Some(lst) = l.remove(&t) {
                    lst.chan.close();
                    drop(lst.ud);
                }
                // what waited for the listener goes to the inbox now
                if let Some(p) = self.parked.borrow_mut().as_mut() {
                    if let Some(q) = p.topics.remove(&t) {
                        p.inbox.extend(q);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// A message as it waits in a Lua channel, until a receive makes it the table Lua
    /// sees (`msg:topic()`, `msg:from()`, `msg:payload():data()`).
    pub(in crate::lua) fn lazy_message(&self, m: Message) -> channel::Item {
        let from = m.from.map(|p| {
            if &p == self.pid() {
                return Rc::from(self.pid_str());
            }
            // a process mostly hears from the same few senders: keep the last one's text
            let mut last = self.last_from.borrow_mut();
            if let Some((lp, text)) = last.as_deref() {
                if *lp == p {
                    return text.clone();
                }
            }
            let text: Rc<str> = p.text().into();
            let kept = (p, text.clone());
            match last.as_deref_mut() {
                // a new sender takes the old one's box
                Some(slot) => *slot = kept,
                None => *last = Some(Box::new(kept)),
            }
            text
        });
        channel::Item::Message(channel::LazyMessage {
            topic: m.topic,
            from,
            payload: m.payload,
        })
    }

    /// What a topic listener gets of a message: the message itself with `message = true`,
    /// else its first payload value.
    pub(in crate::lua) fn listener_item(
        &self,
        m: Message,
        message: bool,
    ) -> mlua::Result<channel::Item> {
        if message {
            Ok(self.lazy_message(m))
        } else {
            self.payload_item(&m.payload)
        }
    }

    /// Counts `delta` more (or fewer) held-back messages, here and against the mailbox's
    /// limit.
    pub(in crate::lua) fn count_parked(&self, delta: isize) {
        self.parked_count
            .set(self.parked_count.get().saturating_add_signed(delta as i32));
        self.me.add_parked(delta);
    }

    /// What a listener without `message = true` gets of a message: its first payload value.
    pub(in crate::lua) fn payload_item(&self, payload: &[Value]) -> mlua::Result<channel::Item> {
        let v = payload.first().unwrap_or(&Value::Nil);
        Ok(channel::Item::Lua(value::to_lua(&self.lua, v)?))
    }

    /// The error of this process when the Lua heap stays over its memory limit.
    /// The entry whose code runs.
    pub fn entry(&self) -> Arc<Entry> {
        self.entry.borrow().clone()
    }

    /// The environment of the code that runs.
    pub fn env(&self) -> Table {
        self.env.borrow().clone()
    }

    /// Asks for the process to go on with `entry`'s code (see `Driver::upgrade`).
    pub fn request_upgrade(&self, entry: Arc<Entry>, args: Vec<Value>) {
        *self.upgrade.borrow_mut() = Some(Box::new((entry, args)));
        self.upgrade_asked.set(true);
    }

    pub(in crate::lua) fn memory_error(&self) -> String {
        format!(
            "process {} ({}): memory limit exceeded (the Lua heap is over {} MiB)",
            self.pid_str(),
            self.entry().id,
            self.run.mem_limit >> 20
        )
    }

    /// Whether a message with `topic` must wait: the channel it goes to is full, or
    /// earlier messages for that channel wait already (their order is kept).
    #[inline]
    pub(in crate::lua) fn must_wait(&self, topic: &str) -> bool {
        if self.parked_count.get() == 0 && self.listeners.borrow().is_empty() {
            return self.inbox.len() >= ROUTE_AHEAD;
        }
        self.must_wait_slow(topic)
    }

    #[inline(never)]
    pub(in crate::lua) fn must_wait_slow(&self, topic: &str) -> bool {
        let listeners = self.listeners.borrow();
        let parked = self.parked.borrow();
        let parked = parked.as_deref();
        match listeners.get(topic) {
            Some(l) => {
                l.chan.len() >= ROUTE_AHEAD
                    || parked.is_some_and(|p| p.topics.get(topic).is_some_and(|q| !q.is_empty()))
            }
            None => self.inbox.len() >= ROUTE_AHEAD || parked.is_some_and(|p| !p.inbox.is_empty()),
        }
    }

    /// Holds back a message whose channel is full.
    #[inline(never)]
    pub(in crate::lua) fn park(&self, m: Message) {
        let listening = self.listeners.borrow().contains_key(&m.topic);
        let mut p = self.parked.borrow_mut();
        let p = p.get_or_insert_with(Default::default);
        if listening {
            p.topics.entry(m.topic.clone()).or_default().push_back(m);
        } else {
            p.inbox.push_back(m);
        }
        self.count_parked(1);
    }

    /// Whether a held-back message now has room in its channel.
    #[inline]
    pub(in crate::lua) fn parked_has_room(&self) -> bool {
        self.parked_count.get() > 0 && self.parked_has_room_slow()
    }

    #[inline(never)]
    pub(in crate::lua) fn parked_has_room_slow(&self) -> bool {
        let p = self.parked.borrow();
        let Some(p) = p.as_deref() else {
            return false;
        };
        if !p.inbox.is_empty() && self.inbox.len() < ROUTE_AHEAD {
            return true;
        }
        let listeners = self.listeners.borrow();
        p.topics.iter().any(|(t, q)| {
            !q.is_empty() && listeners.get(t).is_some_and(|l| l.chan.len() < ROUTE_AHEAD)
        })
    }

    /// Moves held-back messages into their channels while those have room; true when
    /// one moved.
    #[inline(never)]
    pub(in crate::lua) fn unpark(&self, polled: Option<&std::task::Waker>) -> mlua::Result<bool> {
        let mut moved = 0usize;
        while self.inbox.len() < ROUTE_AHEAD {
            let next = self
                .parked
                .borrow_mut()
                .as_mut()
                .and_then(|p| p.inbox.pop_front());
            let Some(m) = next else {
                break;
            };
            self.inbox.push_polled(self.lazy_message(m), polled);
            moved += 1;
        }
        let topics: Vec<String> = match self.parked.borrow().as_deref() {
            Some(p) => p.topics.keys().cloned().collect(),
            None => Vec::new(),
        };
        for t in topics {
            let Some((chan, message)) = self
                .listeners
                .borrow()
                .get(&t)
                .map(|l| (l.chan.clone(), l.message))
            else {
                continue;
            };
            while chan.len() < ROUTE_AHEAD {
                let next = self
                    .parked
                    .borrow_mut()
                    .as_mut()
                    .and_then(|p| p.topics.get_mut(&t))
                    .and_then(VecDeque::pop_front);
                let Some(m) = next else { break };
                moved += 1;
                chan.push_polled(self.listener_item(m, message)?, polled);
            }
            let mut p = self.parked.borrow_mut();
            let Some(p) = p.as_mut() else { continue };
            if p.topics.get(&t).is_some_and(VecDeque::is_empty) {
                p.topics.remove(&t);
            }
        }
        if moved > 0 {
            self.count_parked(-(moved as isize));
            if self.parked_count.get() == 0 {
                *self.parked.borrow_mut() = None;
            }
        }
        Ok(moved > 0)
    }

    /// Puts a message from the mailbox into the channel it goes to. `polled` is the waker
    /// of this process's task, polled right now, when its coroutines last stopped in a real
    /// wait (see [`Chan::push_polled`]).
    pub(in crate::lua) fn deliver(
        &self,
        m: Message,
        polled: Option<&std::task::Waker>,
    ) -> mlua::Result<()> {
        let listeners = self.listeners.borrow();
        if let Some(l) = (!listeners.is_empty())
            .then(|| listeners.get(&m.topic))
            .flatten()
        {
            l.chan
                .push_polled(self.listener_item(m, l.message)?, polled);
            return Ok(());
        }
        self.inbox.push_polled(self.lazy_message(m), polled);
        Ok(())
    }

    pub(in crate::lua) fn exit_event(
        &self,
        kind: &str,
        from: &Pid,
        exit: &Exit,
    ) -> mlua::Result<Table> {
        let ev = self.lua.create_table()?;
        ev.set("kind", kind)?;
        ev.set("from", from.to_string())?;
        let result = self.lua.create_table()?;
        match exit {
            Exit::Normal(v) => result.set("value", value::to_lua(&self.lua, v)?)?,
            // an error object, as for `err` of calls: a string where Lua wants one, and
            // its kind (CANCELED for a process stopped from outside)
            Exit::Error(e) => {
                result.set("error", errors::LuaError::new(e.kind, e.message.clone()))?
            }
            Exit::Killed(e) => result.set("error", errors::LuaError::new("CANCELED", e.clone()))?,
        }
        ev.set("result", result)?;
        Ok(ev)
    }

    /// Handles a control signal; returns the exit when the signal ends the process.
    pub(in crate::lua) fn on_signal(&self, sig: Signal) -> mlua::Result<Option<Exit>> {
        match sig {
            Signal::Terminate(why) => {
                return Ok(Some(Exit::Killed(
                    why.unwrap_or_else(|| "terminated".into()),
                )))
            }
            Signal::Down { from, exit } => {
                let ev = self.exit_event("EXIT", &from, &exit)?;
                self.events().push(mlua::Value::Table(ev));
            }
            Signal::LinkDown { from, exit } => {
                if !self.trap_links.get() {
                    return Ok(Some(Exit::Killed(format!(
                        "linked process {from} failed: {}",
                        exit.error().unwrap_or("unknown error")
                    ))));
                }
                let ev = self.exit_event("LINK_DOWN", &from, &exit)?;
                self.events().push(mlua::Value::Table(ev));
            }
            Signal::Outdated => {
                let sources: Vec<String> = self
                    .me
                    .take_outdated()
                    .iter()
                    .map(|id| id.to_string())
                    .collect();
                let ev = self.lua.create_table()?;
                ev.set("kind", "OUTDATED")?;
                ev.set("sources", sources)?;
                self.events().push(mlua::Value::Table(ev));
            }
            Signal::Cancel { from, reason } => {
                let ev = self.lua.create_table()?;
                ev.set("kind", "CANCEL")?;
                ev.set("from", from.map(|p| p.to_string()))?;
                ev.set("reason", reason)?;
                self.events().push(mlua::Value::Table(ev));
            }
        }
        Ok(None)
    }
}

pub(in crate::lua) fn cached_userdata(
    lua: &Lua,
    slot: &RefCell<Option<AnyUserData>>,
    chan: &Chan,
) -> mlua::Result<AnyUserData> {
    if let Some(ud) = slot.borrow().as_ref() {
        return Ok(ud.clone());
    }
    let ud = channel::to_userdata(lua, chan.clone())?;
    *slot.borrow_mut() = Some(ud.clone());
    Ok(ud)
}
