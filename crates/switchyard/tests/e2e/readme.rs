//! The README and `docs/` as executable documentation: their shell blocks run in order (the
//! README's, then each page's in [`PAGES`] order), as a newcomer pastes them, against the real
//! binary; their JSON blocks parse. A block that cannot run in a test says
//! so in the README source, right above it: `<!-- snippet: skip (why) -->`; one that starts a
//! server is `<!-- snippet: background PORT -->` and the blocks after it wait for that port.
//!
//! What differs from a newcomer's terminal: `cargo run --release -- ARGS` runs the binary cargo
//! already built for this test (a `cargo` on `PATH` that does only that), `./target/release/`
//! is that binary too, the ports 8700 and 9000 become free ones, and `curl` fails on an HTTP
//! error (`--fail-with-body`), so a snippet answering 401 or 422 fails the test.

use std::path::Path;
use std::time::Duration;

/// The pages after the README, in the order their examples build on each other; every page of
/// `docs/` must be here.
const PAGES: &[&str] = &[
    "docs/events-and-delivery.md",
    "docs/executors.md",
    "docs/hooks-and-schedules.md",
    "docs/platforms.md",
    "docs/configuration.md",
    "docs/operations.md",
    "docs/several-nodes.md",
    "docs/development.md",
];

/// A fenced block of a page.
struct Block {
    /// The page it is on.
    page: &'static str,
    /// 1-based line of its opening fence.
    line: usize,
    lang: String,
    /// The `<!-- snippet: … -->` above it, if any.
    marker: Option<String>,
    text: String,
}

fn blocks(page: &'static str, readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if let Some(lang) = fence.strip_prefix("```").filter(|l| !l.is_empty()) {
            let indent = lines[i].len() - fence.len();
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- snippet:"))
                .map(|m| m.trim_end_matches("-->").trim().to_string());
            let mut text = String::new();
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim() != "```" {
                let l = lines[j];
                text.push_str(
                    l.get(indent.min(l.len() - l.trim_start().len())..)
                        .unwrap_or(l),
                );
                text.push('\n');
                j += 1;
            }
            out.push(Block {
                page,
                line: i + 1,
                lang: lang.trim().to_string(),
                marker,
                text,
            });
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut listed: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| format!("docs/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".md"))
        .collect();
    listed.sort();
    let mut known: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    known.sort();
    assert_eq!(
        listed, known,
        "every page of docs/ is in PAGES, in the order it runs"
    );
    let mut all = Vec::new();
    for page in std::iter::once("README.md").chain(PAGES.iter().copied()) {
        let text = std::fs::read_to_string(root.join(page)).expect(page);
        all.extend(blocks(page, &text));
    }
    // Every JSON block is JSON (a pasted fixture must load).
    for b in all.iter().filter(|b| b.lang == "json") {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.text) {
            panic!(
                "{} line {}: the JSON block is not JSON: {e}",
                b.page, b.line
            );
        }
    }

    let work = tempfile::tempdir().expect("dir");
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let shims = work.path().join("shims");
    std::fs::create_dir_all(&shims).expect("shims");
    std::fs::write(
        shims.join("cargo"),
        format!(
            "#!/bin/sh\n# The README test's cargo: `cargo run --release -- ARGS` runs the built binary.\n\
             if [ \"$1 $2 $3\" = \"run --release --\" ]; then shift 3; exec {bin} \"$@\"; fi\n\
             echo \"the README test runs only 'cargo run --release -- ...', not: cargo $*\" >&2; exit 1\n"
        ),
    )
    .expect("cargo shim");
    std::fs::create_dir_all(work.path().join("target/release")).expect("target");
    std::os::unix::fs::symlink(bin, work.path().join("target/release/switchyard")).expect("link");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(shims.join("cargo"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let (hub_port, receiver_port) = (free_port(), free_port());
    let ports = |text: &str| {
        text.replace("8700", &hub_port.to_string())
            .replace("9000", &receiver_port.to_string())
    };

    let mut script = String::from(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         curl() { command curl --fail-with-body -sS --max-time 60 \"$@\"; }\n\
         wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; \
         echo \"nothing answered on port $1 within a minute\" >&2; return 1; }\n",
    );
    let mut ran = 0;
    for b in all.iter().filter(|b| b.lang == "sh") {
        let marker = b.marker.as_deref().unwrap_or("");
        if marker.starts_with("skip") {
            assert!(
                marker.contains('('),
                "{} line {}: a skipped block says why: <!-- snippet: skip (why) -->",
                b.page,
                b.line
            );
            continue;
        }
        script.push_str(&format!("echo '--- {} line {}' >&2\n", b.page, b.line));
        if let Some(port) = marker.strip_prefix("background") {
            let port = ports(port.trim());
            script.push_str(&format!(
                "( {} ) > background-{}.log 2>&1 &\nwait_port {port}\n",
                ports(&b.text),
                ran
            ));
        } else {
            script.push_str(&ports(&b.text));
            script.push('\n');
        }
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} blocks ran");
    script.push_str("echo '--- the documentation ran to its end' >&2\n");

    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{hub_port}"))
        .env("RUST_LOG", "warn")
        .env_remove("SWITCHYARD_ADMIN_KEY")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the README ran within five minutes")
        .expect("bash");
    let said = String::from_utf8_lossy(&out.stderr);
    let printed = String::from_utf8_lossy(&out.stdout);
    let logs: String = std::fs::read_dir(work.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("background-"))
        .map(|e| {
            format!(
                "== {}\n{}\n",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    eprintln!("{said}");
    assert!(
        out.status.success() && said.contains("the documentation ran to its end"),
        "a documented block failed (the last `--- PAGE line N` is the one):\n{said}\n\
         --- stdout:\n{printed}\n--- background:\n{logs}"
    );
}
