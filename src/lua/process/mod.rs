//! A Lua process: its state (`proc_ctx.rs`), the task that drives it (`driver.rs`), its
//! channels (`channel.rs`) and the messages they deliver (`message.rs`), the `process`
//! module with the general send (`process_api.rs`) beside the fast one (`send.rs`), and
//! message payloads (`payload.rs`).

pub mod channel;
pub(super) mod driver;
pub(super) mod message;
pub mod payload;
pub(super) mod proc_ctx;
pub(super) mod process_api;
pub(super) mod send;
pub(super) mod spawn;
