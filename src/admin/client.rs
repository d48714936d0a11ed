//! The commands that talk to a running node through its admin endpoint: `warden status`,
//! `warden ps`, `warden start|stop|restart SERVICE`. Tables for people, `--json` for
//! scripts; a node that does not answer is a one-line error naming the address tried.

use serde_json::Value;

/// Where a command finds the node.
pub struct Target {
    /// `HOST:PORT` of the admin endpoint.
    pub addr: String,
    /// Its token, if it needs one.
    pub token: Option<String>,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, String> {
        let mut r = r.map_err(|e| format!("cannot reach the node at {}: {e}", self.addr))?;
        let status = r.status();
        let body: Value = r
            .body_mut()
            .read_json()
            .map_err(|e| format!("{}: unreadable answer: {e}", self.addr))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}: HTTP {status}", self.addr)))
        }
    }

    /// GET `path` (JSON).
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let mut req = self.agent().get(&self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        self.finish(req.call())
    }

    /// POST to `path` (JSON answer).
    pub fn post(&self, path: &str) -> Result<Value, String> {
        let mut req = self
            .agent()
            .post(&self.url(path))
            .header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        self.finish(req.send("{}"))
    }
}

/// Percent-encodes a path segment (ids have `:`, pids `{`, `|`, `}`).
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Rows as an aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `warden status`: the node, then its services.
pub fn status(t: &Target, json: bool) -> Result<String, String> {
    let node = t.get("/api/v1/status")?;
    let services = t.get("/api/v1/services")?;
    if json {
        return Ok(serde_json::json!({ "node": node, "services": services }).to_string());
    }
    let mut out = format!(
        "node {}: {} processes, {} services, {} trees, {} restarts, up {:.0} s\n\n",
        text(&node["node"]),
        text(&node["processes"]),
        text(&node["services"]),
        text(&node["trees"]),
        text(&node["restarts"]),
        node["uptime_seconds"].as_f64().unwrap_or(0.0)
    );
    let rows: Vec<Vec<String>> = services
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    ["id", "state", "pid", "attempt", "restarts", "error"]
                        .iter()
                        .map(|k| text(&s[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(
        &["SERVICE", "STATE", "PID", "ATTEMPT", "RESTARTS", "ERROR"],
        &rows,
    ));
    Ok(out)
}

/// `warden ps`: the processes.
pub fn ps(t: &Target, json: bool) -> Result<String, String> {
    let procs = t.get("/api/v1/processes")?;
    if json {
        return Ok(procs.to_string());
    }
    let rows: Vec<Vec<String>> = procs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    vec![
                        text(&p["pid"]),
                        text(&p["entry"]),
                        text(&p["state"]),
                        text(&p["mailbox"]),
                        p["links"].as_array().map_or(0, |l| l.len()).to_string(),
                        text(&p["monitors"]),
                        p["names"]
                            .as_array()
                            .map(|n| n.iter().map(text).collect::<Vec<_>>().join(","))
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table(
        &[
            "PID", "ENTRY", "STATE", "MAILBOX", "LINKS", "MONITORS", "NAMES",
        ],
        &rows,
    ))
}

/// `warden start|stop|restart SERVICE`.
pub fn service(t: &Target, action: &str, id: &str, json: bool) -> Result<String, String> {
    let s = t.post(&format!("/api/v1/services/{}/{action}", segment(id)))?;
    if json {
        return Ok(s.to_string());
    }
    Ok(format!(
        "{}: {} (pid {})\n",
        text(&s["id"]),
        text(&s["state"]),
        text(&s["pid"])
    ))
}

/// One screen of `warden top`: the node, the services, the busiest processes (longest
/// mailboxes first).
pub fn top_screen(t: &Target, rows: usize) -> Result<String, String> {
    let mut out = status(t, false)?;
    let procs = t.get("/api/v1/processes")?;
    let mut list: Vec<&Value> = procs
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    list.sort_by_key(|p| std::cmp::Reverse(p["mailbox"].as_u64().unwrap_or(0)));
    list.truncate(rows);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                text(&p["pid"]),
                text(&p["entry"]),
                text(&p["state"]),
                text(&p["mailbox"]),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["PID", "ENTRY", "STATE", "MAILBOX"], &rows));
    Ok(out)
}
