//! The `cluster.nats` entry: how a node reaches the cluster's NATS server when the command
//! line does not say (`--cluster` overrides its url, `--node` its node name).
//!
//! ```yaml
//! - name: cluster
//!   kind: cluster.nats
//!   url: nats://10.0.0.5:4222
//!   node: a                         # optional
//!   cluster_name: shop              # optional: subjects and buckets of this cluster only
//!   heartbeat: 500ms                # optional: a node is lost after five missed
//!   credentials: secrets/app.creds  # optional, a NATS credentials file
//!   tls: {ca: ca.pem, cert: node.pem, key: node.key}  # optional; paths beside the YAML
//! ```

use crate::registry::{fields, Registry};
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
    /// The cluster's name (`--cluster-name`, field `cluster_name`): every subject, queue
    /// group and bucket carries it, so two apps on one NATS account never meet.
    pub cluster_name: Option<String>,
    /// Join a server that is not on this machine without credentials or TLS
    /// (`--cluster-insecure`): anyone who reaches it could act as any node.
    pub insecure: bool,
    /// How often a node says it is alive (50 ms to 10 s; 500 ms when not given).
    pub heartbeat: Option<std::time::Duration>,
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

/// A cluster name is letters, digits, `-` and `_` (it becomes a subject token and part of
/// bucket names).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{name:?} is not a cluster name (1 to 64 letters, digits, - and _)"
        ));
    }
    Ok(())
}

/// Each server of `url` (one url, or several separated by commas), parsed as async-nats
/// reads it (`nats://` when no scheme is given); None for one that does not parse.
fn servers(url: &str) -> impl Iterator<Item = Option<url::Url>> + '_ {
    url.split(',').map(|u| {
        let u = u.trim();
        if u.contains("://") {
            url::Url::parse(u).ok()
        } else {
            url::Url::parse(&format!("nats://{u}")).ok()
        }
    })
}

/// Whether every server of `url` is on this machine: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(url: &str) -> bool {
    servers(url).all(|s| {
        s.is_some_and(|s| match s.host() {
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        })
    })
}

/// The user in `url`'s first server (`user:password@` or `token@`), if any.
pub fn user_of(url: &str) -> Option<(String, Option<String>)> {
    let s = servers(url).next()??;
    (!s.username().is_empty()).then(|| (s.username().to_string(), s.password().map(str::to_string)))
}

/// Whether every server of `url` carries a user (`nats://user:password@host` or
/// `nats://token@host`).
pub fn has_user(url: &str) -> bool {
    servers(url).all(|s| s.is_some_and(|s| !s.username().is_empty()))
}

impl Config {
    /// Refuses a join that would let anyone who reaches the server act as any node: a
    /// server not on this machine with no credentials (a credentials file or a user in
    /// the url) and no TLS, unless `insecure`.
    pub fn check_secure(&self) -> Result<(), String> {
        if self.insecure
            || is_loopback(&self.url)
            || self.credentials.is_some()
            || self.tls
            || has_user(&self.url)
        {
            return Ok(());
        }
        Err(format!(
            "--cluster {}: a server on another machine with no credentials and no TLS lets anyone who reaches it act as any node; give the cluster.nats entry credentials or tls (or a user in the url), or pass --cluster-insecure",
            redact(&self.url)
        ))
    }
}

/// `url` with any password (or a token) replaced by `***` (for messages and logs).
pub fn redact(url: &str) -> String {
    url.split(',')
        .zip(servers(url))
        .map(|(text, s)| match s {
            Some(mut s) if !s.username().is_empty() => {
                let _ = if s.password().is_some() {
                    s.set_password(Some("***"))
                } else {
                    s.set_username("***")
                };
                s.to_string()
            }
            None if text.contains('@') => "<a url that does not parse>".to_string(),
            _ => text.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
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
    // a string (an empty one is as good as none)
    let text = |field: &str, v: Option<&Json>| -> Result<Option<String>, String> {
        Ok(fields::text(v)
            .map_err(|m| at(field, m))?
            .filter(|s| !s.is_empty()))
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
        cluster_name: text("cluster_name", e.raw.get("cluster_name"))?,
        ..Config::default()
    };
    if let Some(n) = &c.cluster_name {
        check_name(n).map_err(|m| at("cluster_name", m))?;
    }
    if let Some(d) = fields::duration(e.raw.get("heartbeat")).map_err(|m| at("heartbeat", m))? {
        if d < std::time::Duration::from_millis(50) || d > std::time::Duration::from_secs(10) {
            return Err(at("heartbeat", format!("{d:?} is outside 50ms..10s")));
        }
        c.heartbeat = Some(d);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_users_and_redaction() {
        assert!(is_loopback("nats://127.0.0.1:4222"));
        assert!(is_loopback("nats://a:pw@localhost:4222,nats://[::1]:4223"));
        assert!(!is_loopback("nats://10.0.0.5:4222"));
        assert!(!is_loopback(
            "nats://127.0.0.1:4222,nats://nats.example.com"
        ));
        assert!(has_user("nats://a:pw@10.0.0.5:4222"));
        assert!(!has_user("nats://10.0.0.5:4222"));
        assert_eq!(
            redact("nats://a:pw@10.0.0.5:4222"),
            "nats://a:***@10.0.0.5:4222"
        );
        let open = Config::url("nats://10.0.0.5:4222");
        let err = open.check_secure().unwrap_err();
        assert!(err.contains("--cluster-insecure"), "{err}");
        assert!(Config {
            insecure: true,
            ..open.clone()
        }
        .check_secure()
        .is_ok());
        assert!(Config::url("nats://a:pw@10.0.0.5:4222")
            .check_secure()
            .is_ok());
        assert!(check_name("shop-1").is_ok());
        assert!(check_name("a.b").is_err());
    }
}
