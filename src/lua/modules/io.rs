//! The `io` module of terminal programs (Wippy's `io`, en/lua/system/io.md): `write`,
//! `print`, `eprint`, `read` (up to n bytes, 1024 by default), `readline`, `flush`,
//! `args`, `raw` (the terminal's raw mode, counted: each `raw(true)` wants a `raw(false)`;
//! the runtime puts the terminal back when it ends). Output goes straight to the runtime's stdout and
//! stderr, so a process run with `warden run -x` prints just what it writes. Input is
//! read by one thread that owns stdin and hands bytes to whichever process asks: a
//! process waiting for a line suspends its task, never a worker thread.

use mlua::{Lua, MultiValue, Table, Variadic};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// The arguments `io.args()` gives: those of the command line that started the process
/// (`warden run -x ns:entry ARGS...`), set once by the CLI.
static ARGS: OnceLock<Vec<String>> = OnceLock::new();

/// Sets what `io.args()` returns (the CLI calls this before it runs a process).
pub fn set_args(args: Vec<String>) {
    let _ = ARGS.set(args);
}

#[derive(Default)]
struct Input {
    buf: VecDeque<u8>,
    eof: bool,
    error: Option<String>,
}

struct Stdin {
    input: Mutex<Input>,
    ready: Notify,
    /// Signalled when a reader took input: the reader thread waits on it while
    /// [`STDIN_BUFFER`] bytes wait unread.
    room: std::sync::Condvar,
}

/// Most bytes of stdin read ahead of the processes that read it; past it the reader
/// thread stops reading until they take some (the writer then waits on its pipe).
pub const STDIN_BUFFER: usize = 1 << 20;

/// Starts the stdin reader on first use.
fn stdin() -> &'static Arc<Stdin> {
    static STDIN: OnceLock<Arc<Stdin>> = OnceLock::new();
    STDIN.get_or_init(|| {
        let s = Arc::new(Stdin {
            input: Mutex::new(Input::default()),
            ready: Notify::new(),
            room: std::sync::Condvar::new(),
        });
        let s2 = s.clone();
        let _ = std::thread::Builder::new()
            .name("warden-stdin".into())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                let mut stdin = std::io::stdin().lock();
                loop {
                    {
                        let input = s2.input.lock().unwrap_or_else(|e| e.into_inner());
                        let _room = s2
                            .room
                            .wait_while(input, |i| i.buf.len() >= STDIN_BUFFER)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    let r = stdin.read(&mut chunk);
                    let mut input = s2.input.lock().unwrap_or_else(|e| e.into_inner());
                    let done = match r {
                        Ok(0) => {
                            input.eof = true;
                            true
                        }
                        Ok(n) => {
                            input.buf.extend(&chunk[..n]);
                            false
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
                        Err(e) => {
                            input.error = Some(e.to_string());
                            input.eof = true;
                            true
                        }
                    };
                    drop(input);
                    s2.ready.notify_waiters();
                    if done {
                        break;
                    }
                }
            });
        s
    })
}

/// Waits until `take` finds what it needs in the input (or the input ended).
async fn wait_for<T>(mut take: impl FnMut(&mut Input) -> Option<T>) -> T {
    let s = stdin();
    loop {
        let notified = s.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut input = s.input.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = take(&mut input) {
                drop(input);
                s.room.notify_one();
                return v;
            }
        }
        notified.await;
    }
}

fn text(lua: &Lua, args: &[mlua::Value], sep: &str) -> mlua::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep.as_bytes());
        }
        match a {
            mlua::Value::String(s) => out.extend_from_slice(&s.as_bytes()),
            other => {
                let tostring: mlua::Function = lua.globals().get("tostring")?;
                let s: mlua::String = tostring.call(other.clone())?;
                out.extend_from_slice(&s.as_bytes());
            }
        }
    }
    Ok(out)
}

fn write_to(mut w: impl Write, bytes: &[u8]) -> mlua::Result<bool> {
    w.write_all(bytes)
        .and_then(|_| w.flush())
        .map(|_| true)
        .map_err(|e| mlua::Error::runtime(format!("io: {e}")))
}

/// How many `io.raw(true)` are not matched yet, and the terminal's settings before the
/// first.
static RAW: Mutex<(usize, Option<rustix::termios::Termios>)> = Mutex::new((0, None));

/// Turns the terminal's raw mode on (counted) or off (when the count falls to zero).
fn set_raw(on: bool) -> Result<(), (&'static str, String)> {
    let stdin = std::io::stdin();
    let mut raw = RAW.lock().unwrap_or_else(|e| e.into_inner());
    if on {
        if raw.0 == 0 {
            if !rustix::termios::isatty(&stdin) {
                return Err(("UNAVAILABLE", "io.raw: stdin is not a terminal".into()));
            }
            let saved = rustix::termios::tcgetattr(&stdin)
                .map_err(|e| ("INTERNAL", format!("io.raw: {e}")))?;
            let mut t = saved.clone();
            t.make_raw();
            rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &t)
                .map_err(|e| ("INTERNAL", format!("io.raw: {e}")))?;
            raw.1 = Some(saved);
        }
        raw.0 += 1;
    } else if raw.0 > 0 {
        raw.0 -= 1;
        if raw.0 == 0 {
            if let Some(saved) = raw.1.take() {
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved)
                    .map_err(|e| ("INTERNAL", format!("io.raw: {e}")))?;
            }
        }
    }
    Ok(())
}

/// Puts the terminal back as it was before the first `io.raw(true)`, if one is still on
/// (the CLI calls this when the runtime ends).
pub fn restore_terminal() {
    let mut raw = RAW.lock().unwrap_or_else(|e| e.into_inner());
    raw.0 = 0;
    if let Some(saved) = raw.1.take() {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &saved,
        );
    }
}

fn eof(lua: &Lua, error: Option<String>) -> mlua::Result<MultiValue> {
    match error {
        Some(e) => crate::lua::errors::LuaError::new("INTERNAL", format!("io: stdin: {e}")),
        None => crate::lua::errors::LuaError::new("CANCELED", "io: end of input"),
    }
    .into_nil_err(lua)
}

/// The `io` module.
pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "write",
        lua.create_function(|lua, args: Variadic<mlua::Value>| {
            write_to(std::io::stdout().lock(), &text(lua, &args, "")?)
        })?,
    )?;
    t.set(
        "print",
        lua.create_function(|lua, args: Variadic<mlua::Value>| {
            let mut b = text(lua, &args, "\t")?;
            b.push(b'\n');
            write_to(std::io::stdout().lock(), &b)
        })?,
    )?;
    t.set(
        "eprint",
        lua.create_function(|lua, args: Variadic<mlua::Value>| {
            let mut b = text(lua, &args, "\t")?;
            b.push(b'\n');
            write_to(std::io::stderr().lock(), &b)
        })?,
    )?;
    t.set(
        "flush",
        lua.create_function(|_, ()| write_to(std::io::stdout().lock(), b""))?,
    )?;
    t.set(
        "args",
        lua.create_function(|lua, ()| {
            lua.create_sequence_from(ARGS.get().cloned().unwrap_or_default())
        })?,
    )?;
    t.set(
        "raw",
        lua.create_function(|lua, on: Option<bool>| match set_raw(on.unwrap_or(true)) {
            Ok(()) => Ok(MultiValue::from_vec(vec![mlua::Value::Boolean(true)])),
            Err((kind, msg)) => crate::lua::errors::LuaError::new(kind, msg).into_nil_err(lua),
        })?,
    )?;
    t.set(
        "readline",
        lua.create_async_function(|lua, ()| async move {
            let got = wait_for(|input| {
                if let Some(pos) = input.buf.iter().position(|b| *b == b'\n') {
                    let mut line: Vec<u8> = input.buf.drain(..=pos).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(Ok(line));
                }
                if input.eof {
                    if input.buf.is_empty() {
                        return Some(Err(input.error.clone()));
                    }
                    return Some(Ok(input.buf.drain(..).collect()));
                }
                // a line longer than the read-ahead comes in pieces of that size
                if input.buf.len() >= STDIN_BUFFER {
                    return Some(Ok(input.buf.drain(..).collect()));
                }
                None
            })
            .await;
            match got {
                Ok(line) => Ok(MultiValue::from_vec(vec![mlua::Value::String(
                    lua.create_string(line)?,
                )])),
                Err(e) => eof(&lua, e),
            }
        })?,
    )?;
    t.set(
        "read",
        // en/lua/system/io.md: 1024 bytes by default, and for any n <= 0
        lua.create_async_function(|lua, n: Option<i64>| async move {
            let n = match n {
                Some(n) if n > 0 => n as usize,
                _ => 1024,
            };
            let got = wait_for(|input| {
                if !input.buf.is_empty() {
                    let k = n.min(input.buf.len());
                    return Some(Ok(input.buf.drain(..k).collect::<Vec<u8>>()));
                }
                input.eof.then(|| Err(input.error.clone()))
            })
            .await;
            match got {
                Ok(bytes) => Ok(MultiValue::from_vec(vec![mlua::Value::String(
                    lua.create_string(bytes)?,
                )])),
                Err(e) => eof(&lua, e),
            }
        })?,
    )?;
    Ok(t)
}
