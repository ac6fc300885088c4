//! The network of a package install: an installer in its sandbox reaches the configured package
//! indexes through the hub's proxy — plain HTTP and CONNECT — and nothing else: another host
//! through the proxy is refused with the reason, a download past the install's allowance is cut
//! short, and around the proxy there is no network at all.

use crate::helpers::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use switchyard_core::egress::EgressPolicy;
use switchyard_exec::index_proxy::{Index, IndexProxy};
use switchyard_exec::install::{InstallRun, Installer};
use switchyard_exec::sandbox::Isolation;

/// Tries every way out it knows and prints what each gave, as JSON.
const PROBE: &str = r#"
import json, socket, sys, urllib.error, urllib.request
index, other, proxy = int(sys.argv[1]), int(sys.argv[2]), 3128
out = {}
def fetch(url, opener=urllib.request.urlopen, timeout=30):
    try:
        return opener(url, timeout=timeout).read().decode()
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
# Plain HTTP through the proxy (HTTP_PROXY is set): the index answers, another host does not.
out["index"] = fetch(f"http://127.0.0.1:{index}/simple/")
out["other"] = fetch(f"http://127.0.0.1:{other}/")
# More than the install may bring in through one connection: cut short.
out["big"] = fetch(f"http://127.0.0.1:{index}/big")
# CONNECT, as HTTPS indexes are reached: a tunnel to the index, none to another host.
def connect(port):
    s = socket.create_connection(("127.0.0.1", proxy), timeout=30)
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    said = s.recv(4096).decode()
    if " 200 " not in said.split("\r\n")[0]:
        return said.split("\r\n")[0]
    s.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
    return got.decode().split("\r\n\r\n", 1)[-1]
out["connect_index"] = connect(index)
out["connect_other"] = connect(other)
# Around the proxy: the network namespace holds the loopback and the forwarder, nothing else.
direct = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
out["direct"] = fetch(f"http://127.0.0.1:{index}/simple/", direct, 5)
try:
    socket.create_connection(("1.1.1.1", 443), timeout=5)
    out["internet"] = "reached"
except OSError as e:
    out["internet"] = type(e).__name__
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_reaches_its_package_indexes_and_nothing_else() {
    let index = serve_on_loopback(
        axum::Router::new()
            .route("/simple/", axum::routing::get(|| async { "the index" }))
            .route("/big", axum::routing::get(|| async { "x".repeat(3 << 20) })),
    )
    .await;
    let other =
        serve_on_loopback(axum::Router::new().fallback(|| async { "another host's secret" })).await;
    let helper = Path::new(env!("CARGO_BIN_EXE_switchyard")).to_path_buf();
    let isolation = tokio::task::spawn_blocking(move || Isolation::probe(Some(&helper)))
        .await
        .expect("probe");
    let policy = EgressPolicy {
        allow: vec!["127.0.0.0/8".parse().expect("net")],
        require_https: false,
    };
    let indexes = vec![Index {
        host: "127.0.0.1".into(),
        port: index.port(),
    }];
    let installer = Installer::new(isolation, IndexProxy::new(indexes, policy));
    let out = installer
        .run(InstallRun {
            program: Path::new("/usr/bin/python3"),
            args: vec![
                "-I".into(),
                "probe.py".into(),
                index.port().to_string(),
                other.port().to_string(),
            ],
            env: Vec::new(),
            files: vec![("probe.py".into(), PROBE.as_bytes().to_vec())],
            memory_mb: 128,
            tmp_mb: 16,
            timeout: Duration::from_secs(120),
            out: None,
            ro: Vec::new(),
            download_mb: 1,
        })
        .await
        .expect("the installer ran");
    assert_eq!(out.exit, Some(0), "{out:#?}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).expect("its JSON");
    assert_eq!(seen["index"], "the index", "{seen:#}");
    assert_eq!(seen["other"], 403, "{seen:#}");
    assert_eq!(seen["big"], "IncompleteRead", "{seen:#}");
    assert_eq!(seen["connect_index"], "the index", "{seen:#}");
    assert!(
        seen["connect_other"]
            .as_str()
            .is_some_and(|s| s.contains("403")),
        "{seen:#}"
    );
    assert_eq!(seen["direct"], "URLError", "{seen:#}");
    assert!(
        seen["internet"].as_str().is_some_and(|s| s != "reached"),
        "{seen:#}"
    );
}
