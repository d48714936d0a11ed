//! Go-style channels for Lua: `channel.new([n])`, `ch:send(v)`, `ch:receive()`, `ch:close()`,
//! and `channel.select{...}` over `ch:case_receive()` / `ch:case_send(v)` cases with an
//! optional `default = true`.
//!
//! A channel lives inside one process (all its coroutines share one worker thread), so it is
//! a plain `Rc<RefCell<..>>`; waiting is done with wakers, so a coroutine blocked on a
//! channel suspends its process task and never its thread. An unbuffered channel hands each
//! value from a waiting sender to a receiver. The runtime also feeds channels from outside
//! Lua (the inbox, topic listeners, events, timers) with [`Chan::push`], which never blocks.

use mlua::{ffi, AnyUserData, Lua, MetaMethod, UserData, UserDataMethods};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::raw::c_int;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

thread_local! {
    /// Set when code polled on this thread began to wait on a channel fed from a
    /// mailbox (the inbox, events, a topic listener): see [`take_message_wait`].
    static MESSAGE_WAIT: Cell<bool> = const { Cell::new(false) };
    static NEXT_WAITER: Cell<u64> = const { Cell::new(1) };
}

fn next_waiter_id() -> u64 {
    NEXT_WAITER.with(|c| {
        let v = c.get();
        c.set(v + 1);
        v
    })
}

#[derive(Clone, Copy, PartialEq)]
enum SlotState {
    Waiting,
    Taken,
    Closed,
}

/// A value waiting in a channel: a Lua value, or a message from the mailbox whose Lua
/// object is built only when it is received (in the receiving call, without a protected
/// call or a reference of its own; see [`receive_raw`]).
pub enum Item {
    /// A Lua value.
    Lua(mlua::Value),
    /// A message not yet made its Lua object.
    Message(LazyMessage),
}

/// A message as it waits in a channel (see [`Item`]).
pub struct LazyMessage {
    /// Its topic.
    pub topic: String,
    /// The sender's pid text, if any (shared with the receiver's cache of senders).
    pub from: Option<Rc<str>>,
    /// Its payload values.
    pub payload: Vec<crate::value::Value>,
}

impl Item {
    /// The Lua value of this item (a message becomes its object).
    pub fn into_lua(self, lua: &Lua) -> mlua::Result<mlua::Value> {
        match self {
            Item::Lua(v) => Ok(v),
            Item::Message(m) => super::message::message_value(
                lua,
                &crate::lua::worker()?.message_mt,
                &m.topic,
                m.from.as_deref(),
                &m.payload,
            ),
        }
    }
}

struct PendingSend {
    id: u64,
    value: mlua::Value,
    state: Rc<Cell<SlotState>>,
    waker: Waker,
}

/// Whether code polled on this thread waited for a message (a receive or select that
/// suspended on the inbox, the events channel or a topic listener) since the last call;
/// clears the mark. A supervised process counts as started at such a wait (OTP's
/// `init` has returned when the process first waits for a message).
pub(crate) fn take_message_wait() -> bool {
    MESSAGE_WAIT.with(|m| m.replace(false))
}

fn mark_message_wait() {
    MESSAGE_WAIT.with(|m| m.set(true));
}

struct Inner {
    buf: VecDeque<Item>,
    /// Fed by the runtime from a mailbox (unbounded): waiting on it is waiting for a
    /// message.
    fed: bool,
    cap: usize,
    closed: bool,
    senders: VecDeque<PendingSend>,
    recv_waiters: Vec<(u64, Waker)>,
    send_waiters: Vec<(u64, Waker)>,
}

impl Inner {
    fn wake_receivers(&mut self) {
        for (_, w) in self.recv_waiters.drain(..) {
            w.wake();
        }
    }

    fn wake_senders(&mut self) {
        for (_, w) in self.send_waiters.drain(..) {
            w.wake();
        }
    }

    fn try_recv(&mut self) -> Option<(Item, bool)> {
        if let Some(v) = self.buf.pop_front() {
            if let Some(s) = self.senders.pop_front() {
                self.buf.push_back(Item::Lua(s.value));
                s.state.set(SlotState::Taken);
                s.waker.wake();
            }
            self.wake_senders();
            return Some((v, true));
        }
        if let Some(s) = self.senders.pop_front() {
            s.state.set(SlotState::Taken);
            s.waker.wake();
            return Some((Item::Lua(s.value), true));
        }
        if self.closed {
            return Some((Item::Lua(mlua::Value::Nil), false));
        }
        None
    }

    /// What `ch:receive()` gets now: an item (`ok` false once closed and drained), or
    /// nothing yet, after registering `waker` (the task polling the receiving coroutine)
    /// to be woken by the next value. Whichever it is, the receiving coroutine is in this
    /// task: its registration from an earlier wait is dropped when it gets an item, except
    /// on a channel fed from the mailbox, where it stays for the next wait (the driver
    /// routes messages to such a channel without waking the task it polls, so the kept
    /// waker wakes nothing; keeping it saves a clone and a drop of the task's waker, two
    /// atomic updates, per message).
    fn take(&mut self, waker: &Waker) -> Option<(Item, bool)> {
        match self.try_recv() {
            Some(got) => {
                if !self.fed && !self.recv_waiters.is_empty() {
                    self.recv_waiters
                        .retain(|(i, w)| *i != SYNC_RECEIVER || !w.will_wake(waker));
                }
                Some(got)
            }
            None => {
                if self.fed {
                    mark_message_wait();
                }
                if !self
                    .recv_waiters
                    .iter()
                    .any(|(i, w)| *i == SYNC_RECEIVER && w.will_wake(waker))
                {
                    // room for one: a process's inbox has one receiver (Vec's first
                    // growth would make room for four, 72 bytes more per process)
                    self.recv_waiters.reserve_exact(1);
                    self.recv_waiters.push((SYNC_RECEIVER, waker.clone()));
                }
                None
            }
        }
    }

    /// True when the next receive gets a message not yet made its object, or waits, or finds
    /// the channel closed: what [`receive_raw`] handles itself.
    fn raw_receivable(&self) -> bool {
        match self.buf.front() {
            Some(Item::Message(_)) => true,
            Some(Item::Lua(_)) => false,
            None => self.senders.is_empty(),
        }
    }

    /// Sends without waiting if there is room or a receiver waiting; Err when closed.
    fn try_send(&mut self, v: mlua::Value) -> Result<Option<mlua::Value>, ()> {
        if self.closed {
            return Err(());
        }
        if self.buf.len() < self.cap
            || (self.cap == 0 && self.buf.is_empty() && !self.recv_waiters.is_empty())
        {
            self.buf.push_back(Item::Lua(v));
            self.wake_receivers();
            return Ok(None);
        }
        Ok(Some(v))
    }
}

/// A channel handle (shared by every Lua reference to the same channel).
#[derive(Clone)]
pub struct Chan(Rc<RefCell<Inner>>);

impl Chan {
    /// A channel with `cap` buffered values (0: unbuffered).
    pub fn new(cap: usize) -> Chan {
        Chan(Rc::new(RefCell::new(Inner {
            buf: VecDeque::new(),
            fed: false,
            cap,
            closed: false,
            senders: VecDeque::new(),
            recv_waiters: Vec::new(),
            send_waiters: Vec::new(),
        })))
    }

    /// An unbounded channel fed by the runtime (inbox, listeners, events).
    pub fn unbounded() -> Chan {
        let c = Chan::new(usize::MAX);
        c.0.borrow_mut().fed = true;
        c
    }

    /// Appends a value without waiting (runtime-fed channels). Returns false when closed.
    pub fn push(&self, v: mlua::Value) -> bool {
        self.push_polled(Item::Lua(v), None)
    }

    /// Like [`Chan::push`] (of any [`Item`]), from inside the poll of the task whose main coroutine runs
    /// next (the process driver routing its mailbox). `polled` is that task's waker, given
    /// only when the coroutine last stopped in a real wait (yielding `Lua::poll_pending`,
    /// after which it looks at its channel again before it can wait once more): then a
    /// `ch:receive()` of that very task is not woken, since it runs in this poll anyway and
    /// waking the running task would only make tokio poll it once more for nothing. Its
    /// registration stays, so a receive that does not run in this poll is still woken by
    /// the next push. With `None` this is [`Chan::push`].
    pub fn push_polled(&self, v: Item, polled: Option<&Waker>) -> bool {
        let mut inner = self.0.borrow_mut();
        if inner.closed {
            return false;
        }
        inner.buf.push_back(v);
        match polled {
            None => inner.wake_receivers(),
            Some(polled) => inner.recv_waiters.retain(|(id, w)| {
                let runs_next = *id == SYNC_RECEIVER && w.will_wake(polled);
                if !runs_next {
                    w.wake_by_ref();
                }
                runs_next
            }),
        }
        true
    }

    /// Takes out the buffered mailbox messages whose topic is `topic`, in order, leaving
    /// everything else in place (`process.listen` moving what waits in the inbox).
    pub fn take_messages(&self, topic: &str) -> Vec<LazyMessage> {
        let mut inner = self.0.borrow_mut();
        let mut taken = Vec::new();
        if inner.buf.is_empty() {
            return taken;
        }
        let mut kept = VecDeque::with_capacity(inner.buf.len());
        for item in inner.buf.drain(..) {
            match item {
                Item::Message(m) if m.topic == topic => taken.push(m),
                other => kept.push_back(other),
            }
        }
        inner.buf = kept;
        taken
    }

    /// Number of buffered values.
    pub fn len(&self) -> usize {
        self.0.borrow().buf.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the channel: receivers drain what is buffered, then get `nil, false`.
    pub fn close(&self) {
        let mut inner = self.0.borrow_mut();
        inner.closed = true;
        for s in inner.senders.drain(..) {
            s.state.set(SlotState::Closed);
            s.waker.wake();
        }
        inner.wake_receivers();
        inner.wake_senders();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.0.borrow().closed
    }

    /// Same channel?
    pub fn same(&self, other: &Chan) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Waits until the value is taken (unbuffered) or buffered.
    pub fn send(&self, v: mlua::Value) -> Send {
        Send {
            chan: self.clone(),
            id: next_waiter_id(),
            value: Some(v),
            slot: None,
        }
    }

    /// A weak handle, for producers that should stop when nobody holds the channel.
    pub fn downgrade(&self) -> WeakChan {
        WeakChan(Rc::downgrade(&self.0))
    }
}

/// A channel handle that does not keep the channel alive (timers, tickers).
pub struct WeakChan(std::rc::Weak<RefCell<Inner>>);

impl WeakChan {
    /// The channel, if anyone still holds it.
    pub fn upgrade(&self) -> Option<Chan> {
        self.0.upgrade().map(Chan)
    }
}

fn register(list: &mut Vec<(u64, Waker)>, id: u64, waker: &Waker) {
    if let Some(e) = list.iter_mut().find(|(i, _)| *i == id) {
        if !e.1.will_wake(waker) {
            e.1 = waker.clone();
        }
    } else {
        list.push((id, waker.clone()));
    }
}

/// Future of [`Chan::send`]; `Err` when the channel is closed.
pub struct Send {
    chan: Chan,
    id: u64,
    value: Option<mlua::Value>,
    slot: Option<Rc<Cell<SlotState>>>,
}

impl Future for Send {
    type Output = Result<(), ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut inner = this.chan.0.borrow_mut();
        if let Some(slot) = &this.slot {
            return match slot.get() {
                SlotState::Taken => Poll::Ready(Ok(())),
                SlotState::Closed => Poll::Ready(Err(())),
                SlotState::Waiting => {
                    if let Some(s) = inner.senders.iter_mut().find(|s| s.id == this.id) {
                        if !s.waker.will_wake(cx.waker()) {
                            s.waker = cx.waker().clone();
                        }
                    }
                    Poll::Pending
                }
            };
        }
        let v = this.value.take().unwrap_or(mlua::Value::Nil);
        match inner.try_send(v) {
            Err(()) => Poll::Ready(Err(())),
            Ok(None) => Poll::Ready(Ok(())),
            Ok(Some(v)) => {
                let state = Rc::new(Cell::new(SlotState::Waiting));
                inner.senders.push_back(PendingSend {
                    id: this.id,
                    value: v,
                    state: state.clone(),
                    waker: cx.waker().clone(),
                });
                inner.wake_receivers();
                this.slot = Some(state);
                Poll::Pending
            }
        }
    }
}

impl Drop for Send {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            if slot.get() == SlotState::Waiting {
                if let Ok(mut inner) = self.chan.0.try_borrow_mut() {
                    inner.senders.retain(|s| s.id != self.id);
                }
            }
        }
    }
}

/// The Lua userdata of a channel.
pub struct LuaChannel(pub Chan);

/// A case of `channel.select`.
pub struct SelectCase {
    chan: Chan,
    ud: AnyUserData,
    send: Option<mlua::Value>,
}

impl UserData for SelectCase {}

fn chan_of(ud: &AnyUserData) -> mlua::Result<Chan> {
    Ok(ud.borrow::<LuaChannel>()?.0.clone())
}

/// The waiter id of a `ch:receive()` waiting without a future (see [`try_receive`]); its
/// entries are told apart by their waker.
const SYNC_RECEIVER: u64 = 0;

/// The general Rust half of `ch:receive()` (its channel borrowed straight off the stack,
/// without a reference: a thousand instructions less a receive than an `AnyUserData`
/// argument): a value if there is one (`value, true`, or `nil, false` once closed and
/// drained); otherwise it registers the waker of the task polling this code and returns
/// `Lua::poll_pending()`, and the Lua half yields that, which suspends the task until a
/// value arrives. One call of a plain function, where an mlua async method would box and
/// poll a future per receive. [`receive_raw`] comes first and handles messages.
fn try_receive(
    lua: &Lua,
    ch: mlua::UserDataRef<LuaChannel>,
) -> mlua::Result<(mlua::Value, mlua::Value)> {
    let got = lua.with_current_waker(|w| ch.0 .0.borrow_mut().take(w));
    match got {
        Some((v, ok)) => Ok((v.into_lua(lua)?, mlua::Value::Boolean(ok))),
        None => Ok((
            mlua::Value::LightUserData(Lua::poll_pending()),
            mlua::Value::Nil,
        )),
    }
}

/// What [`receive_raw`] found.
enum Raw {
    Message(LazyMessage),
    Closed,
    Pending,
    /// Not a channel, a Lua value, a waiting sender, or a panic: the general path's case.
    General,
}

/// # Safety
/// Called from [`receive_raw`] with the channel at index 1 of `l`.
unsafe fn raw_take(l: *mut ffi::lua_State) -> Raw {
    // the worker's Lua, from its thread-local (cheaper than mlua's lookup in the registry)
    crate::lua::WORKER.with(|w| match w.try_borrow() {
        Ok(w) => match w.as_ref() {
            Some(w) => raw_take_in(&w.lua, l),
            None => Raw::General,
        },
        Err(_) => Raw::General,
    })
}

/// # Safety
/// As [`raw_take`]; `lua` is the Lua state `l` belongs to.
unsafe fn raw_take_in(lua: &Lua, l: *mut ffi::lua_State) -> Raw {
    // a channel has the channel metatable (upvalue 3); anything else goes the general way
    if crate::lua::raw::userdata_with_metatable(l, 1, ffi::lua_upvalueindex(3)).is_null() {
        return Raw::General;
    }
    let Some(ch) = Lua::userdata_ptr_unchecked::<LuaChannel>(l, 1) else {
        return Raw::General;
    };
    let Ok(mut inner) = (*ch).0 .0.try_borrow_mut() else {
        return Raw::General;
    };
    if !inner.raw_receivable() {
        return Raw::General;
    }
    match lua.with_current_waker(|w| inner.take(w)) {
        Some((Item::Message(m), _)) => Raw::Message(m),
        Some((Item::Lua(_), _)) => Raw::Closed,
        None => Raw::Pending,
    }
}

/// `ch:receive()`, a C function: the next message of a channel fed from the mailbox, made
/// an object right on the stack of the receiving coroutine (no protected call, no
/// reference); `nil, false` once closed; with nothing there, it registers the task's
/// waker and yields `Lua::poll_pending()` from C (the coroutine suspends with its task),
/// and looks again when resumed. Anything else (a Lua value in the channel, a waiting
/// sender, something that is not a channel) is left to upvalue 2, the general receive in
/// Lua around [`try_receive`]. Upvalue 1 is the message metatable, upvalue 3 the channel
/// metatable (a userdata with it is a channel).
unsafe extern "C-unwind" fn receive_raw(l: *mut ffi::lua_State) -> c_int {
    receive_step(l)
}

/// Where a `ch:receive()` that yielded goes on when its coroutine is resumed.
unsafe extern "C-unwind" fn receive_again(
    l: *mut ffi::lua_State,
    _status: c_int,
    _ctx: ffi::lua_KContext,
) -> c_int {
    receive_step(l)
}

/// # Safety
/// The body of [`receive_raw`]; Lua may yield or raise through this frame, so nothing
/// with a destructor is alive where it calls Lua.
unsafe fn receive_step(l: *mut ffi::lua_State) -> c_int {
    ffi::lua_settop(l, 1);
    let got = std::panic::catch_unwind(|| raw_take(l)).unwrap_or(Raw::General);
    match got {
        Raw::Message(m) => {
            // no destructor may be pending while Lua may raise an error (out of memory):
            // the message is dropped by hand after its object is built
            let m = std::mem::ManuallyDrop::new(m);
            super::message::push_message(
                l,
                ffi::lua_upvalueindex(1),
                &m.topic,
                m.from.as_deref(),
                &m.payload,
            );
            drop(std::mem::ManuallyDrop::into_inner(m));
            ffi::lua_pushboolean(l, 1);
            2
        }
        Raw::Closed => {
            ffi::lua_pushnil(l);
            ffi::lua_pushboolean(l, 0);
            2
        }
        Raw::Pending => {
            ffi::lua_pushlightuserdata(l, Lua::poll_pending().0);
            ffi::lua_yieldk(l, 1, 0, Some(receive_again))
        }
        Raw::General => {
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
            ffi::lua_insert(l, 1);
            ffi::lua_callk(
                l,
                1,
                ffi::LUA_MULTRET,
                0,
                Some(crate::lua::raw::all_results),
            );
            crate::lua::raw::all_results(l, ffi::LUA_OK, 0)
        }
    }
}

/// Where the Lua function `ch:receive()` is kept, for the channel metatable.
const RECEIVE_KEY: &str = "warden.channel.receive";

/// Builds `ch:receive()` ([`receive_raw`], over a Lua loop around [`try_receive`] for the
/// general case) and keeps it for the channel metatable; `message_mt` is the metatable of
/// messages. Called once per Lua state, before its first channel.
pub(crate) fn install_receive(lua: &Lua, message_mt: &mlua::Table) -> mlua::Result<()> {
    let coroutine: mlua::Table = lua.globals().get("coroutine")?;
    let general: mlua::Function = lua
        .load(
            r#"
local try, pending, yield, type, error = ...
return function(ch)
  if type(ch) ~= "userdata" then
    error("receive: called on something that is not a channel", 3)
  end
  local v, ok = try(ch)
  while v == pending do
    yield(pending)
    v, ok = try(ch)
  end
  return v, ok
end"#,
        )
        .set_name("=channel")
        .call((
            lua.create_function(try_receive)?,
            Lua::poll_pending(),
            coroutine.get::<mlua::Function>("yield")?,
            lua.globals().get::<mlua::Function>("type")?,
            lua.globals().get::<mlua::Function>("error")?,
        ))?;
    // SAFETY: pushes one C closure over the two values it is given and a nil, which is
    // set below to the channel metatable.
    let receive = unsafe {
        lua.exec_raw::<mlua::Function>((message_mt, general), |l| {
            ffi::lua_pushnil(l);
            ffi::lua_pushcclosure(l, receive_raw, 3);
        })?
    };
    lua.set_named_registry_value(RECEIVE_KEY, receive.clone())?;
    // the first channel makes mlua build the channel metatable (with `receive` in it)
    let probe = to_userdata(lua, Chan::new(0))?;
    // SAFETY: sets upvalue 3 of the C closure to the probe's metatable.
    unsafe {
        lua.exec_raw::<()>((receive, probe), |l| {
            if ffi::lua_getmetatable(l, -1) != 0 {
                ffi::lua_setupvalue(l, -3, 3);
            }
            ffi::lua_settop(l, 0);
        })
    }
}

/// The `receive` field of the channel metatable: the function [`install_receive`] built.
struct ReceiveField;

impl mlua::IntoLua for ReceiveField {
    fn into_lua(self, lua: &Lua) -> mlua::Result<mlua::Value> {
        lua.named_registry_value(RECEIVE_KEY)
    }
}

impl UserData for LuaChannel {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field("receive", ReceiveField);
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("send", |_, this, v: mlua::Value| {
            let fut = this.0.send(v);
            async move {
                match fut.await {
                    Ok(()) => Ok(true),
                    Err(()) => Err(mlua::Error::runtime("send on a closed channel")),
                }
            }
        });
        methods.add_method("close", |_, this, ()| {
            this.0.close();
            Ok(true)
        });
        methods.add_method("is_closed", |_, this, ()| Ok(this.0.is_closed()));
        methods.add_method("len", |_, this, ()| Ok(this.0.len()));
        methods.add_function("case_receive", |lua, ud: AnyUserData| {
            let chan = chan_of(&ud)?;
            lua.create_userdata(SelectCase {
                chan,
                ud,
                send: None,
            })
        });
        methods.add_function("case_send", |lua, (ud, v): (AnyUserData, mlua::Value)| {
            let chan = chan_of(&ud)?;
            lua.create_userdata(SelectCase {
                chan,
                ud,
                send: Some(v),
            })
        });
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (AnyUserData, AnyUserData)| {
            Ok(match (a.borrow::<LuaChannel>(), b.borrow::<LuaChannel>()) {
                (Ok(a), Ok(b)) => a.0.same(&b.0),
                _ => false,
            })
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("channel: {:p}", Rc::as_ptr(&this.0 .0)))
        });
    }
}

/// Wraps a channel into a Lua userdata.
pub fn to_userdata(lua: &Lua, chan: Chan) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LuaChannel(chan))
}

enum Selected {
    Recv(usize, Item, bool),
    Sent(usize, bool),
    Default,
}

struct Select {
    cases: Vec<(Chan, Option<mlua::Value>)>,
    default: bool,
    id: u64,
}

impl Future for Select {
    type Output = Selected;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Selected> {
        let this = &*self;
        for (i, (chan, send)) in this.cases.iter().enumerate() {
            let mut inner = chan.0.borrow_mut();
            match send {
                None => {
                    if let Some((v, ok)) = inner.try_recv() {
                        drop(inner);
                        this.unregister();
                        return Poll::Ready(Selected::Recv(i, v, ok));
                    }
                }
                Some(v) => match inner.try_send(v.clone()) {
                    Err(()) => {
                        drop(inner);
                        this.unregister();
                        return Poll::Ready(Selected::Sent(i, false));
                    }
                    Ok(None) => {
                        drop(inner);
                        this.unregister();
                        return Poll::Ready(Selected::Sent(i, true));
                    }
                    Ok(Some(_)) => {}
                },
            }
        }
        if this.default {
            return Poll::Ready(Selected::Default);
        }
        for (chan, send) in &this.cases {
            let mut inner = chan.0.borrow_mut();
            if send.is_some() {
                register(&mut inner.send_waiters, this.id, cx.waker());
            } else {
                if inner.fed {
                    mark_message_wait();
                }
                register(&mut inner.recv_waiters, this.id, cx.waker());
            }
        }
        Poll::Pending
    }
}

impl Select {
    fn unregister(&self) {
        for (chan, _) in &self.cases {
            if let Ok(mut inner) = chan.0.try_borrow_mut() {
                inner.recv_waiters.retain(|(i, _)| *i != self.id);
                inner.send_waiters.retain(|(i, _)| *i != self.id);
            }
        }
    }
}

impl Drop for Select {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Builds the global `channel` table (`new`, `select`).
pub fn create(lua: &Lua) -> mlua::Result<mlua::Table> {
    let t = lua.create_table()?;
    t.set(
        "new",
        lua.create_function(|lua, cap: Option<i64>| {
            let cap = cap.unwrap_or(0);
            if cap < 0 {
                return Err(mlua::Error::runtime(
                    "channel.new: the buffer size must not be negative",
                ));
            }
            to_userdata(lua, Chan::new(cap as usize))
        })?,
    )?;
    t.set(
        "select",
        lua.create_async_function(|lua, cases: mlua::Table| async move {
            let mut uds = Vec::new();
            let mut list = Vec::new();
            let mut sending = Vec::new();
            for c in cases.sequence_values::<AnyUserData>() {
                let c = c.map_err(|_| {
                    mlua::Error::runtime(
                        "channel.select: every case must come from ch:case_receive() or ch:case_send(v)",
                    )
                })?;
                let case = c.borrow::<SelectCase>().map_err(|_| {
                    mlua::Error::runtime(
                        "channel.select: every case must come from ch:case_receive() or ch:case_send(v)",
                    )
                })?;
                list.push((case.chan.clone(), case.send.clone()));
                sending.push(case.send.clone());
                uds.push(case.ud.clone());
            }
            let default = cases.get::<Option<bool>>("default")?.unwrap_or(false);
            if list.is_empty() && !default {
                return Err(mlua::Error::runtime("channel.select: no cases"));
            }
            let sel = Select {
                cases: list,
                default,
                id: next_waiter_id(),
            };
            let out = lua.create_table()?;
            match sel.await {
                Selected::Recv(i, v, ok) => {
                    out.set("channel", uds[i].clone())?;
                    out.set("value", v.into_lua(&lua)?)?;
                    out.set("ok", ok)?;
                }
                // en/lua/core/channel.md: a send case gives the value it sent
                Selected::Sent(i, ok) => {
                    out.set("channel", uds[i].clone())?;
                    out.set("value", sending[i].take())?;
                    out.set("ok", ok)?;
                }
                // as Wippy's docs have it: the default case is a successful select
                Selected::Default => {
                    out.set("default", true)?;
                    out.set("ok", true)?;
                }
            }
            Ok(out)
        })?,
    )?;
    Ok(t)
}
