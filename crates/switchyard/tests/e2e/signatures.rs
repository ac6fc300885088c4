//! Independent signature check: a receiver built on the `standardwebhooks` package from PyPI
//! (an implementation we did not write) verifies our requests, before and after a rotation.

use crate::helpers::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const VERIFIER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from standardwebhooks.webhooks import Webhook

secrets = sys.argv[1:]

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        verdicts = {}
        for s in secrets:
            try:
                Webhook(s).verify(body, dict(self.headers))
                verdicts[s] = True
            except Exception as e:
                verdicts[s] = str(e)
        print(json.dumps({"id": self.headers.get("webhook-id"), "verdicts": verdicts}), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass

srv = HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Verifier {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    port: u16,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_verifier(secrets: &[&str]) -> Verifier {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(VERIFIER)
        .args(secrets)
        .stdout(Stdio::piped())
        .spawn()
        .expect(
            "python3 must be installed (.ci/run installs it with the standardwebhooks package)",
        );
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .ok()
        .flatten()
        .expect("the verifier did not start: is the `standardwebhooks` Python package installed?")
        .trim()
        .parse()
        .expect("port");
    Verifier {
        child,
        lines: rx,
        port,
    }
}

async fn next_verdict(v: &mut Verifier) -> serde_json::Value {
    let line = tokio::time::timeout(Duration::from_secs(10), v.lines.recv())
        .await
        .ok()
        .flatten()
        .expect("the verifier got no request");
    serde_json::from_str(&line).expect("verdict json")
}

#[tokio::test]
async fn standard_webhooks_library_verifies_our_signatures_across_rotation() {
    let app = spawn_app().await;
    let org = app.org("sig").await;
    // The secret is known before the endpoint exists, so the verifier can start with it.
    let old = switchyard_core::signing::SigningSecret::generate().expose();
    let new = switchyard_core::signing::SigningSecret::generate().expose();
    let wrong = switchyard_core::signing::SigningSecret::generate().expose();
    let mut verifier = start_verifier(&[&old, &new, &wrong]).await;
    let url = format!("http://127.0.0.1:{}/", verifier.port);
    let ep = app
        .endpoint(&org, json!({"url": url, "secret": old}), &["*"])
        .await;
    assert_eq!(ep["secret"], old.as_str());

    app.publish(
        &org,
        json!({"id": "s1", "type": "TicketCreated", "data": {"ticketId": 1, "text": "ünïcødé ✓"}}),
    )
    .await;
    let v = next_verdict(&mut verifier).await;
    assert_eq!(v["id"], "s1");
    assert_eq!(v["verdicts"][&old], true, "{v}");
    assert_ne!(
        v["verdicts"][&wrong], true,
        "a wrong secret must not verify: {v}"
    );

    let (s, rotated) = app
        .post(
            &format!(
                "/v1/orgs/{}/endpoints/{}/rotate-secret",
                org.id,
                ep["id"].as_str().expect("id")
            ),
            &org.admin,
            json!({"secret": new}),
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    assert_eq!(rotated["secret"], new.as_str());

    app.publish(
        &org,
        json!({"id": "s2", "type": "TicketCreated", "data": {"ticketId": 2}}),
    )
    .await;
    let v = next_verdict(&mut verifier).await;
    assert_eq!(v["id"], "s2");
    assert_eq!(v["verdicts"][&new], true, "the new secret signs: {v}");
    assert_eq!(
        v["verdicts"][&old], true,
        "the old secret still signs for 24 h: {v}"
    );
    assert_ne!(v["verdicts"][&wrong], true);
    app.stop().await;
}

/// Verifies one request with PyNaCl (libsodium), an Ed25519 implementation we did not write:
/// prints `ok` or the failure.
const NACL_VERIFIER: &str = r#"
import base64, sys
from nacl.signing import VerifyKey
public_key, msg_id, timestamp, header = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = VerifyKey(base64.b64decode(public_key[len("whpk_"):]))
content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
errors = []
for part in header.split():
    version, _, sig = part.partition(",")
    if version != "v1a":
        continue
    try:
        key.verify(content, base64.b64decode(sig))
        print("ok")
        sys.exit(0)
    except Exception as e:
        errors.append(repr(e))
print("no v1a signature verified: " + "; ".join(errors))
"#;

fn nacl_verify(public_key: &str, r: &Received, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(NACL_VERIFIER)
        .arg(public_key)
        .arg(r.header("webhook-id").expect("id"))
        .arg(r.header("webhook-timestamp").expect("timestamp"))
        .arg(r.header("webhook-signature").expect("signature"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyNaCl (scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write body");
    let out = child.wait_with_output().expect("verifier");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `switchyard verify` on a received request; returns its exit code and what it printed.
fn switchyard_verify(key: &str, r: &Received, body: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("body");
    std::fs::write(&path, body).expect("write body");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("verify")
        .arg("--key")
        .arg(key)
        .arg("--body")
        .arg(&path);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        cmd.arg("--header")
            .arg(format!("{name}: {}", r.header(name).expect("header")));
    }
    let out = cmd.output().expect("switchyard verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test]
async fn ed25519_signatures_verify_with_the_public_key_in_an_independent_library() {
    let app = spawn_app().await;
    let org = app.org("ed").await;
    let rx = TestReceiver::start().await;
    let ep = app
        .endpoint(
            &org,
            json!({"url": rx.url("/ed"), "signing": "ed25519"}),
            &["*"],
        )
        .await;
    assert_eq!(ep["signing"], "ed25519");
    assert!(
        ep["secret"].is_null(),
        "the secret key never leaves the hub: {ep}"
    );
    let public = ep["public_keys"][0]
        .as_str()
        .expect("a public key")
        .to_string();
    assert!(public.starts_with("whpk_"), "{public}");
    let id = ep["id"].as_str().expect("id").to_string();
    // The public key is readable later, by any member of the organization.
    let (s, read) = app
        .get(&format!("/v1/orgs/{}/endpoints/{id}", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200);
    assert_eq!(read["public_keys"][0], public.as_str());

    app.publish(
        &org,
        json!({"id": "ed1", "type": "T", "data": {"n": "ünï ✓"}}),
    )
    .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert!(
        r.header("webhook-signature")
            .expect("signature")
            .starts_with("v1a,"),
        "{r:?}"
    );
    assert_eq!(nacl_verify(&public, r, &r.body), "ok");
    let mut tampered = r.body.to_vec();
    tampered.push(b' ');
    assert_ne!(nacl_verify(&public, r, &tampered), "ok");
    assert_eq!(switchyard_verify(&public, r, &r.body), (0, "valid".into()));
    let (code, said) = switchyard_verify(&public, r, &tampered);
    assert_eq!(code, 1);
    assert!(
        said.starts_with("invalid: no `v1a` signature matches"),
        "{said}"
    );

    // Back to HMAC by rotation: both signatures until the old key's explicit expiry.
    let expiry = switchyard_core::time::to_rfc3339(switchyard_core::time::now_ms() + 3_600_000);
    let (s, rotated) = app
        .post(
            &format!("/v1/orgs/{}/endpoints/{id}/rotate-secret", org.id),
            &org.admin,
            json!({"signing": "hmac", "old_expires_at": expiry}),
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    assert_eq!(rotated["signing"], "hmac");
    let secret = rotated["secret"]
        .as_str()
        .expect("the new hmac secret")
        .to_string();
    assert_eq!(
        rotated["public_keys"][0],
        public.as_str(),
        "the old key still verifies"
    );
    app.publish(&org, json!({"id": "ed2", "type": "T", "data": {}}))
        .await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let r = &got[1];
    assert_eq!(nacl_verify(&public, r, &r.body), "ok");
    assert_eq!(switchyard_verify(&secret, r, &r.body), (0, "valid".into()));
    assert_eq!(switchyard_verify(&public, r, &r.body), (0, "valid".into()));

    // Retiring the old key now: only the new secret signs.
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{}/endpoints/{id}/rotate-secret", org.id),
            &org.admin,
            json!({"secret": secret, "old_expires_at": switchyard_core::time::to_rfc3339(0)}),
        )
        .await;
    assert_eq!(s, 200);
    app.publish(&org, json!({"id": "ed3", "type": "T", "data": {}}))
        .await;
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let r = &got[2];
    assert_eq!(switchyard_verify(&secret, r, &r.body), (0, "valid".into()));
    let (code, said) = switchyard_verify(&public, r, &r.body);
    assert_eq!(
        (code, said.as_str()),
        (1, "invalid: no `v1a` signature in `webhook-signature`")
    );
    app.stop().await;
}
