//! The log lines a test's processes write (through the Lua `logger`), kept for its report.
//!
//! Each test runs on a node of its own name; a log event names its process (`pid =
//! {node|N}`), so the [`Capture`] layer files it under that node's buffer while the test
//! is registered.

use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::{Arc, LazyLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// A test's captured lines.
pub type Lines = Arc<Mutex<Vec<String>>>;

static BUFFERS: LazyLock<DashMap<String, Lines>> = LazyLock::new(DashMap::new);

/// Most lines kept per test (the first ones).
const MAX_LINES: usize = 1000;

/// Starts capturing the lines of node `node`.
pub fn register(node: &str) -> Lines {
    let lines = Lines::default();
    BUFFERS.insert(node.to_string(), lines.clone());
    lines
}

/// Stops capturing the lines of node `node`.
pub fn unregister(node: &str) {
    BUFFERS.remove(node);
}

/// The tracing layer that captures (install it with a filter for the `lua` target).
pub struct Capture;

#[derive(Default)]
struct Fields {
    pid: Option<String>,
    entry: Option<String>,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        match field.name() {
            "pid" => self.pid = Some(v),
            "entry" => self.entry = Some(v),
            "message" => self.message = Some(v),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "pid" => self.pid = Some(value.to_string()),
            "entry" => self.entry = Some(value.to_string()),
            "message" => self.message = Some(value.to_string()),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(pid) = f.pid else { return };
        let Some(node) = pid
            .strip_prefix('{')
            .and_then(|p| p.split_once('|'))
            .map(|(n, _)| n)
        else {
            return;
        };
        if let Some(buf) = BUFFERS.get(node) {
            let mut lines = buf.lock();
            if lines.len() < MAX_LINES {
                lines.push(format!(
                    "{:5} {} {}: {}",
                    event.metadata().level(),
                    pid,
                    f.entry.unwrap_or_default(),
                    f.message.unwrap_or_default()
                ));
            }
        }
    }
}
