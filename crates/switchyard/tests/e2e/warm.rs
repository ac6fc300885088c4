//! Warm interpreters: a Python, PHP or Node.js run takes an interpreter started ahead of it in
//! a sandbox of its own, and that interpreter serves that run alone — the next run, of the
//! same organization or another's, finds nothing the last one left: no globals, no files —
//! and a warm run is held to its limits like a cold one.

use crate::executors::{put_executor, run};
use crate::helpers::*;
use serde_json::{Value, json};

/// Reports whether its interpreter was warm and what it finds of earlier runs, then leaves
/// traces of its own: a global in the interpreter and a file in its `/tmp`.
const PROBE_PY: &str = r#"
import builtins, os
def main(input, sdk):
    seen = {"warm": os.environ.get("SWITCHYARD_WARM", ""), "tmp": sorted(os.listdir("/tmp")),
            "leak": getattr(builtins, "leak", None)}
    builtins.leak = input["secret"]
    with open("/tmp/secret-" + input["secret"], "w") as f:
        f.write(input["secret"])
    return seen
"#;

const PROBE_PHP: &str = r#"<?php
function main($in, $sdk) {
    $seen = ['warm' => (string)getenv('SWITCHYARD_WARM'), 'tmp' => array_values(array_diff(scandir('/tmp'), ['.', '..'])),
             'leak' => $GLOBALS['leak'] ?? null];
    $GLOBALS['leak'] = $in['secret'];
    file_put_contents('/tmp/secret-' . $in['secret'], $in['secret']);
    return $seen;
}
"#;

const PROBE_NODE: &str = r#"
const fs = require("fs");
function main(input) {
  const seen = { warm: process.env.SWITCHYARD_WARM || "", tmp: fs.readdirSync("/tmp").sort(),
                 leak: globalThis.leak === undefined ? null : globalThis.leak };
  globalThis.leak = input.secret;
  fs.writeFileSync("/tmp/secret-" + input.secret, input.secret);
  return seen;
}
"#;

/// Runs `name` until a run says its interpreter was warm (the pool starts one after the first
/// run of a shape); answers that run's output.
async fn run_warm(app: &TestApp, org: &Org, name: &str, secret: &str) -> Value {
    let found = std::sync::Mutex::new(None);
    wait_until(&format!("a warm run of {name}"), || async {
        let r = run(app, org, name, json!({"secret": secret})).await;
        assert_eq!(r["status"], "succeeded", "{r:#}");
        let warm = r["output"]["warm"] == "1";
        if warm {
            *found.lock().expect("lock") = Some(r["output"].clone());
        }
        warm
    })
    .await;
    found.into_inner().expect("lock").expect("a warm run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_interpreter_serves_one_run_and_nothing_of_it_reaches_the_next() {
    let app = spawn_app().await;
    let a = app.org("warm-a").await;
    let b = app.org("warm-b").await;
    for (lang, source) in [
        ("python", PROBE_PY),
        ("php", PROBE_PHP),
        ("node", PROBE_NODE),
    ] {
        let name = format!("probe-{lang}");
        // The same shape in both organizations: they share the pool's interpreters.
        for org in [&a, &b] {
            put_executor(
                &app,
                org,
                &name,
                json!({"type": "code", "language": lang, "source": source}),
            )
            .await;
        }
        let first = run(&app, &a, &name, json!({"secret": "a-first"})).await;
        assert_eq!(first["status"], "succeeded", "{lang}: {first:#}");
        // A's warm runs, then B's right after: each finds a fresh interpreter and a fresh /tmp.
        for (org, secret) in [(&a, "a-warm"), (&b, "b-warm"), (&a, "a-again")] {
            let seen = run_warm(&app, org, &name, secret).await;
            assert_eq!(
                seen["leak"],
                Value::Null,
                "{lang}: a global survived: {seen:#}"
            );
            let tmp = seen["tmp"].as_array().expect("listing");
            assert!(
                !tmp.iter()
                    .any(|f| f.as_str().is_some_and(|f| f.starts_with("secret-"))),
                "{lang}: an earlier run's file is in /tmp: {seen:#}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_run_is_held_to_its_limits() {
    let app = spawn_app().await;
    let org = app.org("warm-limits").await;
    // Each says whether it is warm (on stderr, flushed) before it misbehaves.
    let cases = [
        (
            "spin",
            "import os, sys\nsys.stderr.write('warm=' + os.environ.get('SWITCHYARD_WARM', '') + '\\n'); sys.stderr.flush()\nwhile True:\n    pass\n",
            "timeout",
        ),
        (
            "hog",
            "import os, sys\nsys.stderr.write('warm=' + os.environ.get('SWITCHYARD_WARM', '') + '\\n'); sys.stderr.flush()\nx = []\nwhile True:\n    x.append(' ' * 10_000_000)\n",
            "memory",
        ),
        (
            "net",
            "import os, sys, socket\nsys.stderr.write('warm=' + os.environ.get('SWITCHYARD_WARM', '') + '\\n'); sys.stderr.flush()\nsocket.create_connection(('127.0.0.1', 1), timeout=1)\n",
            "the code exited",
        ),
    ];
    for (name, source, _) in &cases {
        put_executor(
            &app,
            &org,
            name,
            json!({"type": "code", "language": "python", "source": source,
                   "timeout_ms": 2000, "memory_mb": 64}),
        )
        .await;
    }
    // Each case again until it ran warm: it fails the same way, within its deadline.
    for (name, _, reason) in cases {
        wait_until(&format!("`{name}` ran warm"), || async {
            let r = run(&app, &org, name, json!({})).await;
            assert_eq!(r["status"], "failed", "{name}: {r:#}");
            let err = r["error"].as_str().unwrap_or_default();
            assert!(err.contains(reason), "{name}: expected `{reason}`: {r:#}");
            r["stderr"].as_str().is_some_and(|s| s.contains("warm=1"))
        })
        .await;
    }
    app.stop().await;
}
