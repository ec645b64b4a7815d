//! `--backends-dns`: the backend set follows DNS names (a Kubernetes
//! headless Service, Consul, Compose's service names, any DNS). Every
//! `dns_interval` each name is resolved again; addresses that appeared are
//! added, and those gone are removed — new requests stop going there at
//! once, requests already there finish. Only backends found this way are
//! ever removed here; `--backends` and those added through the admin API
//! stay.
//!
//! A lookup that fails or comes back empty keeps the name's last addresses:
//! a DNS hiccup must not empty the balancer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::config::DnsTarget;
use crate::state::Lb;
use crate::Backend;

/// Where to resolve: a given server (tests, a cluster DNS reached
/// directly), or the system's `/etc/resolv.conf`.
fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("reading resolv.conf: {e}"))?,
    };
    // Every round asks the server: records are followed, not cached.
    builder.options_mut().cache_size = 0;
    builder
        .build()
        .map_err(|e| format!("building the resolver: {e}"))
}

/// Resolves `target` to backend addresses.
async fn resolve(
    resolver: &TokioResolver,
    target: &DnsTarget,
) -> Result<BTreeSet<SocketAddr>, String> {
    match target {
        DnsTarget::Host { name, port } => {
            let ips = resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            Ok(ips.iter().map(|ip| SocketAddr::new(ip, *port)).collect())
        }
        DnsTarget::Srv { name } => {
            let srv = resolver
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let mut found = BTreeSet::new();
            for record in srv.answers() {
                let RData::SRV(srv) = &record.data else {
                    continue;
                };
                let ips = resolver
                    .lookup_ip(srv.target.clone())
                    .await
                    .map_err(|e| format!("{}: {e}", srv.target))?;
                found.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, srv.port)));
            }
            Ok(found)
        }
    }
}

/// Follows `targets` every `interval` until the task is dropped.
pub async fn run(
    lb: Arc<Lb>,
    targets: Vec<DnsTarget>,
    interval: Duration,
    server: Option<SocketAddr>,
) {
    if targets.is_empty() {
        return;
    }
    let resolver = match resolver(server) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "DNS discovery cannot start");
            return;
        }
    };
    let mut last: BTreeMap<DnsTarget, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut owned: BTreeSet<SocketAddr> = BTreeSet::new();
    loop {
        for target in &targets {
            match resolve(&resolver, target).await {
                Ok(found) if !found.is_empty() => {
                    last.insert(target.clone(), found);
                }
                Ok(_) => {
                    tracing::warn!(%target, "DNS answered no addresses; keeping the last ones")
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "DNS lookup failed; keeping the last addresses")
                }
            }
        }
        let wanted: BTreeSet<SocketAddr> = last.values().flatten().copied().collect();
        reconcile(&lb, &wanted, &mut owned);
        tokio::time::sleep(interval).await;
    }
}

/// Makes the discovered part of the backend set equal to `wanted`.
fn reconcile(lb: &Lb, wanted: &BTreeSet<SocketAddr>, owned: &mut BTreeSet<SocketAddr>) {
    let new: Vec<SocketAddr> = wanted.difference(owned).copied().collect();
    for addr in new {
        match Backend::parse(&format!("http://{addr}")) {
            Ok(backend) => {
                if lb.backends.add(backend) {
                    tracing::info!(backend = %addr, "backend added (DNS)");
                }
                owned.insert(addr);
            }
            Err(e) => tracing::warn!(backend = %addr, error = %e, "DNS gave an unusable address"),
        }
    }
    let gone: Vec<SocketAddr> = owned.difference(wanted).copied().collect();
    for addr in gone {
        if lb.backends.remove(&addr.to_string()) {
            tracing::info!(backend = %addr, "backend removed (DNS)");
        }
        owned.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_host_and_port_or_srv_names() {
        assert_eq!(
            "api:8081".parse::<DnsTarget>().unwrap(),
            DnsTarget::Host {
                name: "api".into(),
                port: 8081
            }
        );
        assert_eq!(
            "_http._tcp.api.default.svc".parse::<DnsTarget>().unwrap(),
            DnsTarget::Srv {
                name: "_http._tcp.api.default.svc".into()
            }
        );
        for bad in ["api", "api:0", "api:http", ":80"] {
            assert!(bad.parse::<DnsTarget>().is_err(), "{bad}");
        }
    }
}
