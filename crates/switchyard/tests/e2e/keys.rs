//! API keys: listed without their secret, revoked at once (cache included), the instance admin
//! key never lost, and header values hidden from viewers.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_without_the_key_and_revoked_at_once() {
    let app = spawn_app().await;
    let org = app.org("keys").await;
    let other = app.org("keys-other").await;
    let (s, created) = app
        .post(
            "/v1/orgs/keys/keys",
            &org.admin,
            json!({"role": "publisher"}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    // Used once, through the cache from then on.
    let publish = |k: String| {
        let app = &app;
        async move {
            app.post("/v1/orgs/keys/events", &k, json!({"type": "T", "data": {}}))
                .await
                .0
        }
    };
    assert_eq!(publish(key.clone()).await, 202);
    assert_eq!(publish(key.clone()).await, 202);

    let mut listed = Value::Null;
    for _ in 0..100 {
        let (s, v) = app.get("/v1/orgs/keys/keys", &org.admin).await;
        assert_eq!(s, 200, "{v}");
        listed = v;
        let mine = listed["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|k| k["id"] == json!(id))
            .cloned()
            .expect("listed");
        if !mine["last_used_at"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = listed.to_string();
    assert!(!text.contains(&key), "a listing never holds a key: {text}");
    let mine = listed["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|k| k["id"] == json!(id))
        .cloned()
        .expect("listed");
    assert_eq!(mine["prefix"], json!(&key[..7]));
    assert_eq!(mine["role"], "publisher");
    assert!(
        mine["created_at"].is_string() && mine["last_used_at"].is_string(),
        "{mine}"
    );
    // Four keys: admin, publisher, viewer from the helper, and this one.
    assert_eq!(listed["data"].as_array().expect("list").len(), 4);
    // Only admins list keys; another organization cannot see or revoke them.
    assert_eq!(app.get("/v1/orgs/keys/keys", &org.viewer).await.0, 403);
    let revoke = |by: String| {
        let (app, path) = (&app, format!("/v1/orgs/keys/keys/{id}"));
        async move { app.call(Method::DELETE, &path, &by, None).await.0 }
    };
    assert_eq!(revoke(other.admin.clone()).await, 404);
    assert_eq!(publish(key.clone()).await, 202, "still valid");
    assert_eq!(revoke(org.admin.clone()).await, 204);
    assert_eq!(publish(key.clone()).await, 401, "revoked at once");
    assert_eq!(revoke(org.admin.clone()).await, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_header_names_but_not_values() {
    let app = spawn_app().await;
    let org = app.org("hdr").await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": "http://127.0.0.1:9/", "headers": {"X-Api-Key": "very-secret-value"}}),
            &["T"],
        )
        .await;
    let path = format!("/v1/orgs/hdr/endpoints/{}", ep["id"].as_str().expect("id"));
    let (_, as_viewer) = app.get(&path, &org.viewer).await;
    assert_eq!(as_viewer["headers"]["X-Api-Key"], "[hidden]", "{as_viewer}");
    let (_, list) = app.get("/v1/orgs/hdr/endpoints", &org.viewer).await;
    assert!(!list.to_string().contains("very-secret-value"), "{list}");
    let (_, as_admin) = app.get(&path, &org.admin).await;
    assert_eq!(as_admin["headers"]["X-Api-Key"], "very-secret-value");
    app.stop().await;
}

fn serve_cmd(dir: &std::path::Path, listen: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["serve", "--listen", listen])
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SWITCHYARD_ADMIN_KEY")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The `sy_…` key in what the binary printed.
fn printed_key(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    text.split_whitespace()
        .find(|w| w.starts_with("sy_"))
        .unwrap_or_else(|| panic!("no key printed: {text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_admin_key_is_never_lost() {
    switchyard_egress::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tmp");
    // A start on a taken port fails before anything is written: no database, no key shown, and
    // the error names the port and who holds it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = serve_cmd(dir.path(), &addr).output().expect("run");
    assert!(!out.status.success(), "the port was taken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("already in use"),
        "the error names the port: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "the error names the process holding it: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sy_"),
        "a key was shown by a hub that never served"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "a hub that cannot serve wrote to its data dir"
    );
    drop(taken);

    // The first start that serves prints the key, before it is stored; it works.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let orgs_status = |key: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            for _ in 0..400 {
                if let Ok(r) = client
                    .get(format!("{base}/v1/orgs"))
                    .bearer_auth(&key)
                    .send()
                    .await
                {
                    return r.status().as_u16();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the hub did not answer");
        }
    };
    let mut hub = KillOnDrop(
        serve_cmd(dir.path(), &format!("127.0.0.1:{port}"))
            .spawn()
            .expect("start"),
    );
    let first = {
        use std::io::BufRead;
        let stdout = hub.0.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        loop {
            let line = lines
                .next()
                .expect("the hub printed its key")
                .expect("line");
            printed.extend_from_slice(line.as_bytes());
            printed.push(b' ');
            if line.contains("sy_") {
                break printed_key(&printed);
            }
        }
    };
    assert_eq!(orgs_status(first.clone()).await, 200);
    drop(hub);

    // Lost anyway: the offline command sets a new one and revokes the old.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("reset-admin-key")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("reset");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = printed_key(&out.stdout);
    assert_ne!(first, second);
    let hub = KillOnDrop(
        serve_cmd(dir.path(), &format!("127.0.0.1:{port}"))
            .spawn()
            .expect("start"),
    );
    assert_eq!(orgs_status(second).await, 200);
    assert_eq!(orgs_status(first).await, 401);
    drop(hub);
    // On a directory that holds no hub, the command says so.
    let empty = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("reset-admin-key")
        .arg("--data-dir")
        .arg(empty.path())
        .output()
        .expect("reset");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to reset"));
}
