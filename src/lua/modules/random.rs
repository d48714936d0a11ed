//! `math.random` and `math.randomseed` (en/lua/core/base.md, "Random Numbers"), with Lua
//! 5.4's arguments. Processes share a worker's Lua state, so one generator for all of
//! them would let a process's `randomseed` decide what another draws: the numbers come
//! from a generator of the worker until the code running seeds its own, which then
//! belongs to that process (or function call) alone and goes with it.

use mlua::{Lua, MultiValue, Table, UserData, Value};
use std::cell::RefCell;

/// A seeded generator of one process or call.
struct Seeded(RefCell<fastrand::Rng>);

impl UserData for Seeded {}

const REGISTRY_KEY: &str = "warden.random";

thread_local! {
    /// The worker's generator, for code that seeded none.
    static SHARED: RefCell<fastrand::Rng> = RefCell::new(fastrand::Rng::new());
}

/// The globals table of the code running now (its process's or call's).
fn current_env() -> Option<Table> {
    match crate::lua::current_any()? {
        crate::lua::Current::Process(p) => Some(p.env()),
        crate::lua::Current::Call(c) => Some(c.env.clone()),
    }
}

/// The generators seeded by code, by their code's globals (weak keys: a generator goes
/// with its process).
fn seeded_table(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(t) = lua.named_registry_value::<Table>(REGISTRY_KEY) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.set("__mode", "k")?;
    t.set_metatable(Some(mt))?;
    lua.set_named_registry_value(REGISTRY_KEY, &t)?;
    Ok(t)
}

fn with_rng<R>(lua: &Lua, f: impl FnOnce(&mut fastrand::Rng) -> R) -> mlua::Result<R> {
    if let Some(env) = current_env() {
        if let Value::UserData(ud) = seeded_table(lua)?.raw_get::<Value>(env)? {
            if let Ok(s) = ud.borrow::<Seeded>() {
                return Ok(f(&mut s.0.borrow_mut()));
            }
        }
    }
    Ok(SHARED.with(|r| f(&mut r.borrow_mut())))
}

fn int_arg(v: &Value, n: usize) -> mlua::Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Number(f) if f.fract() == 0.0 && f.is_finite() => Ok(*f as i64),
        Value::Number(_) => Err(mlua::Error::runtime(format!(
            "bad argument #{n} to 'random' (number has no integer representation)"
        ))),
        other => Err(mlua::Error::runtime(format!(
            "bad argument #{n} to 'random' (number expected, got {})",
            other.type_name()
        ))),
    }
}

/// `math.random()`: a float in [0, 1); `(n)`: an integer in [1, n]; `(m, n)`: in [m, n];
/// `(0)`: any integer.
fn random(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let args: Vec<Value> = args.into_iter().collect();
    match args.as_slice() {
        [] => Ok(Value::Number(with_rng(lua, |r| r.f64())?)),
        [n] => {
            let n = int_arg(n, 1)?;
            if n == 0 {
                return Ok(Value::Integer(with_rng(lua, |r| r.i64(..))?));
            }
            if n < 1 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'random' (interval is empty)",
                ));
            }
            Ok(Value::Integer(with_rng(lua, |r| r.i64(1..=n))?))
        }
        [m, n] => {
            let (m, n) = (int_arg(m, 1)?, int_arg(n, 2)?);
            if m > n {
                return Err(mlua::Error::runtime(
                    "bad argument #2 to 'random' (interval is empty)",
                ));
            }
            Ok(Value::Integer(with_rng(lua, |r| r.i64(m..=n))?))
        }
        _ => Err(mlua::Error::runtime(
            "wrong number of arguments to 'random'",
        )),
    }
}

/// `math.randomseed(x)`: the code running draws from its own generator, seeded with x
/// (the same x, the same numbers); without x, a seed of its own.
fn randomseed(lua: &Lua, x: Option<Value>) -> mlua::Result<()> {
    let seed = match x {
        None | Some(Value::Nil) => fastrand::u64(..),
        Some(Value::Integer(i)) => i as u64,
        Some(Value::Number(f)) => f.to_bits(),
        Some(other) => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #1 to 'randomseed' (number expected, got {})",
                other.type_name()
            )))
        }
    };
    let Some(env) = current_env() else {
        SHARED.with(|r| *r.borrow_mut() = fastrand::Rng::with_seed(seed));
        return Ok(());
    };
    let ud = lua.create_userdata(Seeded(RefCell::new(fastrand::Rng::with_seed(seed))))?;
    seeded_table(lua)?.raw_set(env, ud)
}

/// `random` and `randomseed` for the sandbox's `math`.
pub fn functions(lua: &Lua) -> mlua::Result<(mlua::Function, mlua::Function)> {
    Ok((
        lua.create_function(random)?,
        lua.create_function(randomseed)?,
    ))
}
