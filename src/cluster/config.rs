//! The `cluster.nats` entry: how a node reaches the cluster's NATS server when the command
//! line does not say (`--cluster` overrides its url, `--node` its node name).
//!
//! ```yaml
//! - name: cluster
//!   kind: cluster.nats
//!   url: nats://10.0.0.5:4222
//!   node: a                         # optional
//!   credentials: secrets/app.creds  # optional, a NATS credentials file
//!   tls: {ca: ca.pem, cert: node.pem, key: node.key}  # optional; paths beside the YAML
//! ```

use crate::registry::Registry;
use serde_json::Value as Json;
use std::path::PathBuf;

/// The kind of the entry.
pub const KIND: &str = "cluster.nats";

/// How to connect.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The server's url.
    pub url: String,
    /// This node's name, when the entry gives one.
    pub node: Option<String>,
    /// A NATS credentials file.
    pub credentials: Option<PathBuf>,
    /// TLS: root certificates to trust.
    pub tls_ca: Option<PathBuf>,
    /// TLS: this node's certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// TLS is required (a `tls` mapping is present).
    pub tls: bool,
}

impl Config {
    /// A config with only a url (`--cluster URL` without an entry).
    pub fn url(url: &str) -> Config {
        Config {
            url: url.to_string(),
            ..Config::default()
        }
    }
}

/// The app's `cluster.nats` entry, if it has one; errors name the file, entry and field.
pub fn from_registry(reg: &Registry) -> Result<Option<Config>, String> {
    let mut found = reg.of_kind(KIND);
    let Some(e) = found.next() else {
        return Ok(None);
    };
    let at = |field: &str, msg: String| {
        format!("{}: entry {}: field {field}: {msg}", e.file.display(), e.id)
    };
    if let Some(other) = found.next() {
        return Err(at(
            "kind",
            format!("a second {KIND} entry ({}); an app has one", other.id),
        ));
    }
    let dir = e.file.parent().map(PathBuf::from).unwrap_or_default();
    let text = |field: &str, v: Option<&Json>| -> Result<Option<String>, String> {
        match v {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(at(field, format!("expected a string, found {other}"))),
        }
    };
    let path = |field: &str, v: Option<&Json>| -> Result<Option<PathBuf>, String> {
        Ok(text(field, v)?.map(|p| dir.join(p)))
    };
    let url = text("url", e.raw.get("url"))?.ok_or_else(|| {
        at(
            "url",
            "missing (the server, e.g. nats://127.0.0.1:4222)".into(),
        )
    })?;
    let mut c = Config {
        url,
        node: text("node", e.raw.get("node"))?,
        credentials: path("credentials", e.raw.get("credentials"))?,
        ..Config::default()
    };
    match e.raw.get("tls") {
        None | Some(Json::Null) => {}
        Some(Json::Object(t)) => {
            c.tls = true;
            c.tls_ca = path("tls.ca", t.get("ca"))?;
            let cert = path("tls.cert", t.get("cert"))?;
            let key = path("tls.key", t.get("key"))?;
            match (cert, key) {
                (Some(c2), Some(k)) => c.tls_client = Some((c2, k)),
                (None, None) => {}
                _ => return Err(at("tls", "cert and key go together".into())),
            }
        }
        Some(other) => {
            return Err(at(
                "tls",
                format!("expected a mapping {{ca, cert, key}}, found {other}"),
            ))
        }
    }
    Ok(Some(c))
}
