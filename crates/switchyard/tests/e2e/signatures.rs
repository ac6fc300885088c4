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
