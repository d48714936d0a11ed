//! The `warden` command line: `run`, `run --exec`, `run list`, `run NAME`, `check`,
//! `call`, `test`, and `status`, `ps`, `start`, `stop`, `restart` against a running
//! node's admin endpoint.

use crate::process::Exit;
use crate::registry::{self, Id, Registry};
use crate::runtime::Runtime;
use crate::value::{self, Value};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

/// warden: run Wippy-style apps of Lua processes as supervised actors.
#[derive(Parser, Debug)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the app and run until SIGINT/SIGTERM; `run list` lists commands; `run NAME`
    /// runs the command NAME; `run --exec ns:entry` runs one process to completion.
    Run(RunArgs),
    /// Load and validate the app, print every error, start nothing.
    Check(DirArg),
    /// Call one function and print its result as JSON.
    Call(CallArgs),
    /// Run the app's tests (entries with `meta.type: test`), each on a fresh runtime.
    Test(TestArgs),
    /// A running node's summary and services (through its admin endpoint).
    Status(NodeArgs),
    /// A running node's processes (through its admin endpoint).
    Ps(NodeArgs),
    /// Start a service of a running node.
    Start(ServiceArgs),
    /// Stop a service of a running node.
    Stop(ServiceArgs),
    /// Restart a service of a running node.
    Restart(ServiceArgs),
    /// A live view of a running node, refreshed every second (Ctrl-C ends it).
    Top(TopArgs),
}

#[derive(Args, Debug)]
struct TopArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Stop after this many screens (default: run until interrupted).
    #[arg(long, short = 'n')]
    iterations: Option<u64>,
}

/// The default address of the admin endpoint.
const DEFAULT_ADMIN: &str = "127.0.0.1:9464";

#[derive(Args, Debug)]
struct NodeArgs {
    /// The node's admin endpoint, HOST:PORT (default: WARDEN_ADMIN, else 127.0.0.1:9464).
    #[arg(long)]
    admin: Option<String>,
    /// Its token (default: WARDEN_ADMIN_TOKEN).
    #[arg(long)]
    admin_token: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl NodeArgs {
    fn target(&self) -> crate::admin::client::Target {
        crate::admin::client::Target {
            addr: self
                .admin
                .clone()
                .or_else(|| std::env::var("WARDEN_ADMIN").ok())
                .unwrap_or_else(|| DEFAULT_ADMIN.into()),
            token: self
                .admin_token
                .clone()
                .or_else(|| std::env::var("WARDEN_ADMIN_TOKEN").ok()),
        }
    }
}

#[derive(Args, Debug)]
struct ServiceArgs {
    /// The service id, `namespace:name`.
    #[arg(value_name = "NS:SERVICE")]
    service: String,
    #[command(flatten)]
    node: NodeArgs,
}

/// Report formats of `warden test`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Lines for people, laid out as Wippy's runner prints them: the cases by suite,
    /// the failures with their place, the counts.
    Text,
    /// JUnit XML, for CI systems.
    Junit,
    /// TAP 13.
    Tap,
}

#[derive(Args, Debug)]
struct TestArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Run only the tests whose id contains one of these.
    filters: Vec<String>,
    /// Tests run at once (default: the cores).
    #[arg(short = 'j', long = "jobs")]
    jobs: Option<usize>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the junit or tap report to this file (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Fail a test that leaves processes running (they are reported either way).
    #[arg(long)]
    fail_leaks: bool,
    /// Accepted as `wippy test` takes it; tests run on the hosts their entries name.
    #[arg(long, value_name = "NS:HOST")]
    host: Option<String>,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args, Debug)]
struct CallArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The function id, `namespace:name`.
    #[arg(value_name = "NS:FUNC")]
    function: String,
    /// Arguments as JSON values (`42`, `'"text"'`, `'{"a":1}'`); one that is not valid
    /// JSON is passed as a string.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args, Debug)]
struct DirArg {
    /// App directory (its `src/` is used when the YAML lives there).
    #[arg(short = 'd', long = "dir", default_value = ".")]
    dir: PathBuf,
}

/// Wippy's logging flags (en/guides/cli.md, "Global Flags").
#[derive(Args, Debug, Default)]
struct LogArgs {
    /// Debug logging.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// No log lines at all.
    #[arg(short = 's', long, conflicts_with = "verbose")]
    silent: bool,
}

/// Wippy's `-o namespace:entry:field=value` (en/guides/cli.md, `wippy run`).
#[derive(Args, Debug, Default)]
struct OverrideArgs {
    /// Override an entry's field before the app starts: `namespace:entry:field=value`
    /// (repeatable; `field` may be dotted, `lifecycle.auto_start`; `true`, `false` and
    /// numbers are read as such).
    #[arg(short = 'o', long = "override", value_name = "NS:ENTRY:FIELD=VALUE")]
    overrides: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Run this process entry to completion, then exit (0 if it returned, 1 if it failed).
    /// Runs silent (no runtime log lines) unless -v, -s or RUST_LOG say otherwise.
    #[arg(short = 'x', long = "exec", value_name = "NS:ENTRY")]
    exec: Option<String>,
    /// The host --exec (or a command) runs on (default: the app's one `terminal.host`).
    #[arg(long, value_name = "NS:HOST")]
    host: Option<String>,
    #[command(flatten)]
    overrides: OverrideArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Watch the app's files and apply each change to the running app (one log line per
    /// change: what changed and what restarted, or the errors and "nothing applied").
    #[arg(long)]
    watch: bool,
    /// Serve the admin endpoint (metrics, the JSON API, actions) on HOST:PORT (default:
    /// WARDEN_ADMIN when set).
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<String>,
    /// The token every admin request must carry (default: WARDEN_ADMIN_TOKEN); needed to
    /// serve a non-loopback address.
    #[arg(long)]
    admin_token: Option<String>,
    /// Refuse every admin action (metrics and the JSON API only).
    #[arg(long)]
    admin_read_only: bool,
    /// This node's name, the first part of its pids (default: WARDEN_NODE, else `local`).
    #[arg(long)]
    node: Option<String>,
    /// Join the cluster at this NATS url, e.g. nats://127.0.0.1:4222 (default:
    /// WARDEN_CLUSTER when set).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// The cluster's name: its subjects and buckets on the server, so two apps on one
    /// NATS account never meet (default: WARDEN_CLUSTER_NAME, the cluster.nats entry's
    /// cluster_name, else `default`).
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// Join a server on another machine with no credentials and no TLS (anyone who
    /// reaches it can then act as any node).
    #[arg(long)]
    cluster_insecure: bool,
    /// Strict mode of the security model: code with no actor or no scope is refused
    /// everything a policy guards (default: WARDEN_SECURITY_STRICT=1).
    #[arg(long)]
    security_strict: bool,
    /// `list`, or the name of a command (an entry's meta.command.name), then its arguments;
    /// with --exec, the arguments of the process.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Picks the directory holding the app's YAML: DIR itself, or DIR/src (Wippy's layout)
/// when DIR has no YAML of its own. A Wippy project (DIR has a `wippy.lock`) is loaded
/// from DIR: the lock says where its source and modules are.
pub fn app_dir(dir: &Path) -> PathBuf {
    if dir.join(registry::LOCK_FILE).is_file() {
        return dir.to_path_buf();
    }
    let has_yaml = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                let p = e.path();
                p.is_file()
                    && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
            })
        })
    };
    let src = dir.join("src");
    if !has_yaml(dir) && src.is_dir() {
        src
    } else {
        dir.to_path_buf()
    }
}

fn print_errors(errs: &[registry::LoadError], dir: &Path) {
    for e in errs {
        eprintln!("error: {e}");
    }
    eprintln!("{} error(s) loading {}", errs.len(), dir.display());
}

/// Loads the app in `dir` (see [`app_dir`]); with Wippy's layout, `DIR/supervisors` is
/// loaded too. Every error of the load is printed together: the registry's, then those of
/// its services and supervisors (leaving out the ones that only repeat that an entry
/// with its own error is unusable).
fn load(dir: &Path) -> Result<Registry, i32> {
    let app = app_dir(dir);
    let (reg, errs) = load_app(dir);
    for w in &reg.warnings {
        tracing::warn!("{w}");
    }
    if !errs.is_empty() {
        print_errors(&errs, &app);
        return Err(1);
    }
    Ok(reg)
}

/// Loads the app under `dir` (its YAML directory, and `supervisors/` beside `src/`) and
/// checks its services and trees: the registry, and every error.
fn load_app(dir: &Path) -> (Registry, Vec<registry::LoadError>) {
    let app = app_dir(dir);
    let (mut reg, mut errs) = registry::load_dir_partial(&app);
    let sups = dir.join("supervisors");
    let loaded_already = reg.entries.values().any(|e| e.file.starts_with(&sups));
    if (app != dir || dir.join(registry::LOCK_FILE).is_file()) && sups.is_dir() && !loaded_already {
        let (extra, extra_errs) = registry::load_dir_partial(&sups);
        errs.extend(extra_errs);
        for (id, e) in extra.entries {
            if let Some(prev) = reg.entries.get(&id) {
                errs.push(registry::LoadError {
                    file: e.file.clone(),
                    entry: Some(id.to_string()),
                    field: Some("name".into()),
                    message: format!(
                        "duplicate id {id}: already declared in {}",
                        prev.file.display()
                    ),
                });
            } else {
                reg.entries.insert(id, e);
            }
        }
        reg.warnings.extend(extra.warnings);
    }
    if let Err(check_errs) = crate::supervision::spec::check(&reg) {
        let broken: Vec<String> = errs.iter().filter_map(|e| e.entry.clone()).collect();
        errs.extend(check_errs.into_iter().filter(|e| {
            !broken
                .iter()
                .any(|id| e.entry.as_deref() != Some(id.as_str()) && e.message.contains(id))
        }));
    }
    (reg, errs)
}

/// Logs go to stderr, coloured only when stderr is a terminal and `NO_COLOR` is unset or
/// empty (no escape codes in a file, a pipe or a CI log).
fn init_tracing(quiet: bool, log: &LogArgs) {
    use std::io::IsTerminal;
    // -v and -s first, then RUST_LOG, then: silent for a program run with -x or a command
    // (Wippy's `run -x` prints only what the program writes), info for an app
    let filter = if log.verbose {
        tracing_subscriber::EnvFilter::new("debug")
    } else if log.silent {
        tracing_subscriber::EnvFilter::new("off")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if quiet { "off" } else { "info" })
        })
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .try_init();
}

/// Logging of `warden test`: the processes' own log lines (the `lua` target) are kept for
/// each test's report; the runtime's own log is off (tests make services fail on
/// purpose), `RUST_LOG=warn` shows it on stderr.
fn init_test_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() != "lua"
        }));
    let capture = crate::testing::capture::Capture.with_filter(
        tracing_subscriber::filter::Targets::new().with_target("lua", tracing::Level::DEBUG),
    );
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(capture)
        .try_init();
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match &cli.command {
        Command::Test(_) => init_test_tracing(),
        Command::Run(r) => init_tracing(r.exec.is_some() || !r.rest.is_empty(), &r.log),
        _ => init_tracing(false, &LogArgs::default()),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Check(d) => check(&d.dir),
            Command::Run(r) => run(r).await,
            Command::Call(c) => call(c).await,
            Command::Test(t) => test(t).await,
            Command::Status(n) => node_command(|t| crate::admin::client::status(t, n.json), &n),
            Command::Ps(n) => node_command(|t| crate::admin::client::ps(t, n.json), &n),
            Command::Start(s) => service_command("start", &s),
            Command::Stop(s) => service_command("stop", &s),
            Command::Restart(s) => service_command("restart", &s),
            Command::Top(t) => top(&t).await,
        }
    })
}

/// Runs a command against a node's admin endpoint (blocking HTTP, off the async
/// threads' hot path: these commands run nothing else).
fn node_command(
    f: impl FnOnce(&crate::admin::client::Target) -> Result<String, String>,
    args: &NodeArgs,
) -> i32 {
    let target = args.target();
    match tokio::task::block_in_place(|| f(&target)) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `warden top`: a screen a second, in place on a terminal.
async fn top(args: &TopArgs) -> i32 {
    use std::io::{IsTerminal, Write};
    let target = args.node.target();
    let live = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let screen = tokio::task::block_in_place(|| crate::admin::client::top_screen(&target, 15));
        match screen {
            Ok(s) => {
                let mut out = std::io::stdout().lock();
                if live {
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                let _ = write!(out, "{s}");
                let _ = out.flush();
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
        n += 1;
        if args.iterations.is_some_and(|max| n >= max) {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn service_command(action: &str, args: &ServiceArgs) -> i32 {
    node_command(
        |t| crate::admin::client::service(t, action, &args.service, args.node.json),
        &args.node,
    )
}

/// `warden test`: exit 0 when every case passed (or was skipped), 1 otherwise.
async fn test(args: TestArgs) -> i32 {
    use crate::testing::{self, report};
    use std::io::{IsTerminal, Write};
    let reg = match load(&args.dir.dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let reg = match apply_overrides(reg, &args.overrides.overrides) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Some(h) = &args.host {
        if let Err(e) = exec_host(&reg, Some(h)) {
            eprintln!("error: {e}");
            return 1;
        }
    }
    let tests = testing::discover(&reg, &args.filters);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let text = args.format == Format::Text;
    let live = text && std::io::stdout().is_terminal();
    let total = tests.len();
    let mut shown = 0;
    let started = std::time::Instant::now();
    let results = testing::run_all(&reg, tests, jobs, args.fail_leaks, |r| {
        shown += 1;
        if live {
            // a line per finished test and a progress line, replaced by the report
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{}\n[{shown}/{total}] ", report::test_line(r));
            let _ = out.flush();
        }
    })
    .await;
    let elapsed = started.elapsed();
    let (_, failed, _) = report::totals(&results);
    match args.format {
        Format::Text => {
            let mut out = std::io::stdout().lock();
            if live {
                let _ = write!(out, "\r\x1b[2K\n");
            }
            let _ = write!(out, "{}", report::text(&results, elapsed));
        }
        Format::Junit | Format::Tap => {
            let body = if args.format == Format::Junit {
                report::junit(&results)
            } else {
                report::tap(&results)
            };
            match &args.output {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, body) {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        return 1;
                    }
                    eprintln!("{}", report::count_line(&results, elapsed));
                }
                None => print!("{body}"),
            }
        }
    }
    i32::from(failed > 0)
}

fn check(dir: &Path) -> i32 {
    match load(dir) {
        Ok(r) => {
            if let Err(errs) = crate::wasm::compile_registry(&r) {
                print_errors(&errs, &app_dir(dir));
                return 1;
            }
            println!(
                "ok: {} entries in {}",
                r.entries.len(),
                app_dir(dir).display()
            );
            0
        }
        Err(code) => code,
    }
}

/// Commands declared with `meta.command: {name, short}`: (name, short, entry id).
pub fn commands(r: &Registry) -> Vec<(String, String, Id)> {
    let mut out: Vec<(String, String, Id)> = r
        .entries
        .values()
        .filter(|e| e.kind.starts_with("process."))
        .filter_map(|e| {
            let cmd = e.meta.get("command")?;
            let name = cmd.get("name")?.as_str()?.to_string();
            let short = cmd
                .get("short")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            Some((name, short, e.id.clone()))
        })
        .collect();
    out.sort();
    out
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal that arrives right after
/// the "running" line is not lost to the default action) and resolves on either.
fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn call(args: CallArgs) -> i32 {
    let registry = match load(&args.dir.dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let argv: Vec<Value> = args
        .args
        .iter()
        .map(|a| match serde_json::from_str::<serde_json::Value>(a) {
            Ok(j) => value::from_json(&j),
            Err(_) => Value::str(a.clone()),
        })
        .collect();
    let runtime = match Runtime::start(registry).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let code = match runtime.call(&args.function, argv, None).await {
        Ok(v) => match value::to_json(&v) {
            Ok(j) => {
                println!("{j}");
                0
            }
            Err(e) => {
                eprintln!(
                    "error: {}: the result cannot be shown as JSON: {e}",
                    args.function
                );
                1
            }
        },
        Err(e) => {
            eprintln!("error: {} ({}): {}", args.function, e.kind, e.message);
            1
        }
    };
    runtime.shutdown().await;
    code
}

/// Whether `id` is a `process.wasm`, asking the registry actor (a read off the hot path).
async fn is_wasm_process(runtime: &Runtime, id: &Id) -> bool {
    use crate::registry::actor::RegistryMsg;
    ractor::call!(runtime.registry(), RegistryMsg::Get, id.clone())
        .ok()
        .flatten()
        .is_some_and(|e| e.kind == "process.wasm")
}

/// The arguments of `--exec` / a command: strings, as Wippy passes them. A WebAssembly
/// process whose parameters do not take them as strings (an `s32`) gets each argument
/// that parses as JSON as that value instead (so `21` fits an `s32`).
fn command_args(runtime: &Runtime, id: &Id, wasm: bool, argv: Vec<String>) -> Vec<Value> {
    let strings: Vec<Value> = argv.iter().cloned().map(Value::str).collect();
    if !wasm {
        return strings;
    }
    let Some(f) = runtime.wasm().function(id) else {
        return strings;
    };
    if f.convert_args(&strings).is_ok() {
        return strings;
    }
    argv.into_iter()
        .map(|a| match serde_json::from_str::<serde_json::Value>(&a) {
            Ok(j) => value::from_json(&j),
            Err(_) => Value::str(a),
        })
        .collect()
}

/// The host a program run with `-x` (or a command) runs on: `--host`, else the app's one
/// `terminal.host` (Wippy's auto-detection), else, where the app has none, the default
/// host (Wippy refuses to run then).
fn exec_host(registry: &Registry, named: Option<&str>) -> Result<Option<Id>, String> {
    if let Some(h) = named {
        let id = Id::parse(h).map_err(|e| format!("--host {h}: {e}"))?;
        return match registry.get(&id) {
            Some(e) if matches!(e.kind.as_str(), "terminal.host" | "process.host") => Ok(Some(id)),
            Some(e) => Err(format!("--host {h}: {} is a {}, not a host", id, e.kind)),
            None => Err(format!("--host {h}: no such entry")),
        };
    }
    let terminals: Vec<&Id> = registry.of_kind("terminal.host").map(|e| &e.id).collect();
    match terminals.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(format!(
            "multiple terminal hosts found ({}), use --host to specify",
            many.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Applies `-o namespace:entry:field=value` overrides to the loaded app, checked as a
/// load checks it; prints every error and gives the exit code on failure.
fn apply_overrides(reg: Registry, overrides: &[String]) -> Result<Registry, i32> {
    if overrides.is_empty() {
        return Ok(reg);
    }
    let mut changed: std::collections::BTreeMap<Id, serde_json::Value> = Default::default();
    for o in overrides {
        let parsed = (|| -> Result<(Id, String, serde_json::Value), String> {
            let (key, value) = o
                .split_once('=')
                .ok_or("missing \"=\" (namespace:entry:field=value)")?;
            let mut parts = key.splitn(3, ':').map(str::trim);
            let (ns, name, field) = (parts.next(), parts.next(), parts.next());
            let (Some(ns), Some(name), Some(field)) = (ns, name, field) else {
                return Err("missing \":\" (namespace:entry:field=value)".into());
            };
            for (what, v) in [("namespace", ns), ("entry name", name), ("field", field)] {
                if v.is_empty() {
                    return Err(format!("empty {what}"));
                }
            }
            Ok((Id::new(ns, name), field.to_string(), override_value(value)))
        })();
        let (id, field, value) = match parsed {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: -o {o}: {e}");
                return Err(1);
            }
        };
        let Some(entry) = reg.get(&id) else {
            eprintln!("error: -o {o}: no entry {id}");
            return Err(1);
        };
        let raw = changed.entry(id).or_insert_with(|| entry.raw.clone());
        let mut at = &mut *raw;
        let path: Vec<&str> = field.split('.').collect();
        for (i, key) in path.iter().enumerate() {
            if !at.is_object() {
                *at = serde_json::json!({});
            }
            let map = at.as_object_mut().expect("an object");
            if i + 1 == path.len() {
                map.insert(key.to_string(), value.clone());
                break;
            }
            at = map
                .entry(key.to_string())
                .or_insert_with(|| serde_json::json!({}));
        }
    }
    let items: Vec<registry::loader::Item> = changed
        .into_iter()
        .map(|(id, mapping)| {
            let file = reg.get(&id).map(|e| e.file.clone()).unwrap_or_default();
            registry::loader::Item {
                dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
                file,
                namespace: id.namespace.clone(),
                mapping,
            }
        })
        .collect();
    let (next, errs) = registry::loader::load_changes(&reg, &items, &[]);
    if !errs.is_empty() {
        for e in &errs {
            eprintln!("error: {e} (after -o)");
        }
        return Err(1);
    }
    Ok(next)
}

/// An override's value as Wippy reads it: `true` / `false`, an integer, a number with a
/// point or an exponent, else the text.
fn override_value(raw: &str) -> serde_json::Value {
    let t = raw.trim();
    match t.to_ascii_lowercase().as_str() {
        "true" => return serde_json::Value::Bool(true),
        "false" => return serde_json::Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return serde_json::Value::from(i);
    }
    if t.contains(['.', 'e', 'E']) {
        if let Ok(f) = t.parse::<f64>() {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return serde_json::Value::Number(n);
            }
        }
    }
    serde_json::Value::String(raw.to_string())
}

async fn run(args: RunArgs) -> i32 {
    let registry = match load(&args.dir.dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let registry = match apply_overrides(registry, &args.overrides.overrides) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let target = match (&args.exec, args.rest.first()) {
        (Some(id), _) => match Id::parse(id) {
            Ok(id) => Some((id, args.rest.clone())),
            Err(e) => {
                eprintln!("error: --exec {id}: {e}");
                return 1;
            }
        },
        (None, Some(name)) => {
            let cmds = commands(&registry);
            if name == "list" {
                if cmds.is_empty() {
                    println!("no commands (declare one with meta.command: {{name, short}})");
                }
                for (n, short, _) in &cmds {
                    println!("{n:<20} {short}");
                }
                return 0;
            }
            match cmds.iter().find(|(n, _, _)| n == name) {
                Some((_, _, id)) => Some((id.clone(), args.rest[1..].to_vec())),
                None => {
                    let known: Vec<&str> = cmds.iter().map(|(n, _, _)| n.as_str()).collect();
                    eprintln!(
                        "error: unknown command {name:?}; known commands: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                    return 1;
                }
            }
        }
        (None, None) => None,
    };
    let exec_host = if target.is_some() {
        match exec_host(&registry, args.host.as_deref()) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let options = crate::runtime::Options {
        node_name: args
            .node
            .clone()
            .or_else(|| std::env::var("WARDEN_NODE").ok())
            .or_else(|| {
                crate::cluster::config::from_registry(&registry)
                    .ok()
                    .flatten()
                    .and_then(|c| c.node)
            })
            .unwrap_or_else(|| "local".into()),
        cluster: args
            .cluster
            .clone()
            .or_else(|| std::env::var("WARDEN_CLUSTER").ok()),
        cluster_name: args
            .cluster_name
            .clone()
            .or_else(|| std::env::var("WARDEN_CLUSTER_NAME").ok()),
        cluster_insecure: args.cluster_insecure,
        security_strict: args.security_strict
            || std::env::var("WARDEN_SECURITY_STRICT").is_ok_and(|v| v == "1" || v == "true"),
        ..Default::default()
    };
    let runtime = match Runtime::start_with(registry, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let admin = args
        .admin
        .clone()
        .or_else(|| std::env::var("WARDEN_ADMIN").ok());
    if let Some(addr) = admin {
        let config = match addr.parse::<std::net::SocketAddr>() {
            Ok(a) => crate::admin::Config {
                addr: a,
                token: args
                    .admin_token
                    .clone()
                    .or_else(|| std::env::var("WARDEN_ADMIN_TOKEN").ok()),
                read_only: args.admin_read_only,
            },
            Err(e) => {
                eprintln!("error: --admin {addr}: not HOST:PORT ({e})");
                runtime.shutdown().await;
                return 1;
            }
        };
        if let Err(e) = crate::admin::serve(&runtime, config).await {
            eprintln!("error: {e:#}");
            runtime.shutdown().await;
            return 1;
        }
    }
    if args.watch {
        let dir = args.dir.dir.clone();
        let load: crate::watch::Loader = std::sync::Arc::new(move || {
            let (reg, errs) = load_app(&dir);
            if errs.is_empty() {
                Ok(reg)
            } else {
                Err(errs.iter().map(|e| e.to_string()).collect())
            }
        });
        let handle = runtime.services().registry.clone();
        if let Err(e) = crate::watch::start(args.dir.dir.clone(), handle, load) {
            eprintln!("error: --watch {}: {e:#}", args.dir.dir.display());
            runtime.shutdown().await;
            return 1;
        }
    }
    // `system.exit(code)` from any process stops the run with that code
    let services = runtime.services().clone();
    let exit_request = &services.exit;
    let code = match target {
        Some((id, argv)) => {
            let wasm = is_wasm_process(&runtime, &id).await;
            crate::lua::io::set_args(argv.clone());
            let argv = command_args(&runtime, &id, wasm, argv);
            let result = tokio::select! {
                r = runtime.exec_on(&id, exec_host.as_ref(), argv) => r,
                code = exit_request.wait() => Ok(Exit::Normal(Value::Int(code as i64))),
            };
            match result {
                // an integer a Lua main returns is the exit code, as Wippy's `run -x`
                // has it (a WebAssembly guest sets its status with exit(n))
                Ok(Exit::Normal(Value::Int(n))) if !wasm => n.clamp(0, 255) as i32,
                Ok(Exit::Normal(v)) => {
                    if v != Value::Nil {
                        match value::to_json(&v) {
                            Ok(j) => println!("{j}"),
                            Err(_) => println!("{}", value::display(&v)),
                        }
                    }
                    0
                }
                Ok(Exit::Error(crate::process::ExitError { message: e, .. }))
                | Ok(Exit::Killed(e)) => {
                    eprintln!("error: {id} failed: {e}");
                    // a WebAssembly guest that called exit(n) exits with n (only a
                    // process.wasm: a Lua error with the same words is just an error)
                    e.strip_prefix("exited with status ")
                        .filter(|_| wasm)
                        .and_then(|n| n.parse::<i32>().ok())
                        .filter(|n| *n != 0)
                        .unwrap_or(1)
                }
                Err(e) => {
                    eprintln!("error: cannot run {id}: {e}");
                    1
                }
            }
        }
        None => {
            let signal = shutdown_signal();
            tracing::info!("running; press Ctrl-C to stop");
            tokio::select! {
                _ = signal => {
                    tracing::info!("signal received, stopping");
                    0
                }
                code = exit_request.wait() => {
                    tracing::info!("system.exit({code}) called, stopping");
                    code
                }
            }
        }
    };
    runtime.shutdown().await;
    // a program that left the terminal in raw mode does not leave the shell so
    crate::lua::io::restore_terminal();
    code
}
