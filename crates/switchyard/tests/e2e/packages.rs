//! Executors' packages, installed: pip resolves against a package index this test serves (a
//! wheel it builds), in the installer's sandbox through the hub's index proxy, into a
//! content-addressed read-only directory with its lock; a package that is not there, one over
//! the size limit, and one that would run code to install (an sdist) each fail with the reason.

use crate::helpers::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::egress::EgressPolicy;
use switchyard_exec::index_proxy::IndexProxy;
use switchyard_exec::install::Installer;
use switchyard_exec::packages::{InstallFailed, PackageSettings, Packages};
use switchyard_exec::sandbox::Isolation;

/// Builds a wheel `NAME-VERSION-py3-none-any.whl` holding `NAME/__init__.py` (`code`) and a
/// data file of `pad` bytes, into file `OUT`; prints its SHA-256 in hex.
const WHEEL: &str = r#"
import base64, hashlib, io, sys, zipfile
name, version, code, pad, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
files = {f"{name}/__init__.py": code.encode(), f"{name}/data.bin": b"x" * pad,
         f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
         f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = []
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{name}-{version}.dist-info/RECORD,,")
files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    for path, data in files.items():
        z.writestr(path, data)
open(out, "wb").write(buf.getvalue())
sys.stdout.write(hashlib.sha256(buf.getvalue()).hexdigest())
"#;

/// A wheel's bytes and their SHA-256 (hex).
pub(crate) struct Wheel {
    bytes: Vec<u8>,
    sha256: String,
}

pub(crate) fn wheel(name: &str, version: &str, code: &str, pad: usize) -> Wheel {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("w.whl");
    let out = std::process::Command::new("python3")
        .args(["-c", WHEEL, name, version, code, &pad.to_string()])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Wheel {
        bytes: std::fs::read(&file).expect("wheel"),
        sha256: String::from_utf8(out.stdout).expect("hex"),
    }
}

/// A PEP 503 simple index: each project's page links its files with their hashes.
/// Also counts the files it serves.
pub(crate) async fn serve_index(
    files: Vec<(&'static str, String, Wheel)>,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let files = Arc::new(files);
    let pages = files.clone();
    let app = axum::Router::new()
        .route(
            "/simple/{project}/",
            axum::routing::get(
                move |axum::extract::Path(project): axum::extract::Path<String>| {
                    let pages = pages.clone();
                    async move {
                        let links: String = pages
                            .iter()
                            .filter(|(p, _, _)| *p == project)
                            .map(|(_, f, w)| {
                                format!("<a href=\"/files/{f}#sha256={}\">{f}</a>\n", w.sha256)
                            })
                            .collect();
                        if links.is_empty() {
                            Err(axum::http::StatusCode::NOT_FOUND)
                        } else {
                            Ok(axum::response::Html(format!(
                                "<html><body>{links}</body></html>"
                            )))
                        }
                    }
                },
            ),
        )
        .route(
            "/files/{file}",
            axum::routing::get(
                move |axum::extract::Path(file): axum::extract::Path<String>| {
                    let files = files.clone();
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        files
                            .iter()
                            .find(|(_, f, _)| *f == file)
                            .map(|(_, _, w)| w.bytes.clone())
                            .ok_or(axum::http::StatusCode::NOT_FOUND)
                    }
                },
            ),
        );
    (serve_on_loopback(app).await, served)
}

pub(crate) async fn packages(root: &Path, index: std::net::SocketAddr, max_mb: u32) -> Packages {
    installer_for(PackageSettings {
        max_mb,
        ..settings_for(root, index)
    })
    .await
}

/// Installs with `settings` (from the index on this machine it names).
pub(crate) async fn installer_for(settings: PackageSettings) -> Packages {
    let helper = Path::new(env!("CARGO_BIN_EXE_switchyard")).to_path_buf();
    let isolation = tokio::task::spawn_blocking(move || Isolation::probe(Some(&helper)))
        .await
        .expect("probe");
    let policy = EgressPolicy {
        allow: vec!["127.0.0.0/8".parse().expect("net")],
        require_https: false,
    };
    let proxy = IndexProxy::new(settings.indexes(), policy);
    Packages::new(settings, Installer::new(isolation, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_from_the_index_into_a_read_only_directory_named_by_its_lock() {
    let greet = wheel(
        "greet",
        "1.0",
        "def hello():\n    return 'hello from greet'\n",
        10,
    );
    let big = wheel("big", "1.0", "", 3 * 1024 * 1024);
    let greet_sha = greet.sha256.clone();
    let sdist = Wheel {
        bytes: b"not really a tarball".to_vec(),
        sha256: "00".repeat(32),
    };
    let (index, served) = serve_index(vec![
        ("greet", "greet-1.0-py3-none-any.whl".into(), greet),
        ("big", "big-1.0-py3-none-any.whl".into(), big),
        // Only a source archive: installing it would run its setup code, which pip is told never to.
        ("sdistonly", "sdistonly-1.0.tar.gz".into(), sdist),
    ])
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("packages");
    let pkgs = packages(&root, index, 2).await;

    let installed = pkgs
        .install_pip(&["greet==1.0".into()])
        .await
        .expect("installed");
    assert_eq!(
        installed.lock,
        format!("greet==1.0 --hash=sha256:{greet_sha}\n")
    );
    assert!(installed.key.starts_with("pip-"), "{}", installed.key);
    let code = std::fs::read_to_string(installed.dir.join("greet/__init__.py")).expect("code");
    assert!(code.contains("hello from greet"));
    use std::os::unix::fs::PermissionsExt;
    for path in [
        installed.dir.join("greet/__init__.py"),
        installed.dir.clone(),
    ] {
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable: {mode:o}", path.display());
    }
    // The same lock again: the same directory.
    let again = pkgs
        .install_pip(&["greet".into()])
        .await
        .expect("installed again");
    assert_eq!((&again.key, &again.dir), (&installed.key, &installed.dir));

    // Another node, without the directory: installed from the lock once, however many runs
    // ask for it at the same time.
    let other = packages(&dir.path().join("other-node"), index, 2).await;
    let a = ensured_once(&other, &installed, &served, 1).await;
    assert!(a.join("greet/__init__.py").is_file());

    failed_with(
        pkgs.install_pip(&["nosuch==1.0".into()]).await,
        "No matching distribution",
    );
    failed_with(
        pkgs.install_pip(&["sdistonly==1.0".into()]).await,
        "No matching distribution",
    );
    failed_with(
        pkgs.install_pip(&["big==1.0".into()]).await,
        "No space left on device",
    );
    // Refused before anything runs.
    let refused = pkgs
        .install_pip(&["greet @ http://127.0.0.1:1/greet.whl".into()])
        .await
        .expect_err("a URL");
    assert!(matches!(refused, InstallFailed::Refused(_)), "{refused}");
    // Nothing of the failed installs is left under the root but the one directory.
    let left: Vec<String> = std::fs::read_dir(&root)
        .expect("root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // Unused directories go once their grace has passed; one in use stays; what an install
    // cut short left goes at start.
    let keep = std::slice::from_ref(&installed.key);
    assert!(
        pkgs.remove_unused(&[], Duration::from_secs(3600))
            .is_empty()
    );
    assert!(pkgs.remove_unused(keep, Duration::ZERO).is_empty());
    assert_eq!(pkgs.remove_unused(&[], Duration::ZERO), keep.to_vec());
    assert!(!installed.dir.exists());
    std::fs::create_dir_all(root.join(".staging-cut-short/tree")).expect("leftover");
    pkgs.clear_leftovers();
    assert!(!root.join(".staging-cut-short").exists());
}

pub(crate) fn settings_for(root: &Path, index: std::net::SocketAddr) -> PackageSettings {
    PackageSettings {
        root: root.to_path_buf(),
        pip_index: format!("http://{index}/simple/").parse().expect("url"),
        npm_registry: format!("http://{index}/npm/").parse().expect("url"),
        composer_repository: format!("http://{index}/composer/").parse().expect("url"),
        file_hosts: Vec::new(),
        install_scripts: false,
        max_mb: 16,
        timeout: Duration::from_secs(240),
    }
}

/// The executor's install state once it is no longer `installing`.
pub(crate) async fn installed_state(app: &TestApp, org: &Org, name: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (s, v) = app
            .get(&format!("/v1/orgs/{}/executors/{name}", org.id), &org.admin)
            .await;
        assert_eq!(s, 200, "{v}");
        if v["packages_install"]["state"] != "installing" {
            return v["packages_install"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} still installing after five minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_runs_with_the_packages_it_declares() {
    use crate::executors::{put_executor, run};
    use serde_json::json;
    let greet = wheel(
        "greet",
        "1.0",
        "def hello():\n    return 'hello from greet'\n",
        10,
    );
    let greet_sha = greet.sha256.clone();
    let (index, _) = serve_index(vec![("greet", "greet-1.0-py3-none-any.whl".into(), greet)]).await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("packages");
    let with_index = |s: &mut switchyard::Settings| {
        s.packages = Some(settings_for(&root, index));
    };
    let app = spawn_app_in(dir.path(), with_index).await;
    let org = app.org("pkgs").await;
    let source = "import os, greet\ndef main(input, sdk):\n    return {'said': greet.hello(), 'warm': os.environ.get('SWITCHYARD_WARM', '')}\n";
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{}/executors/greeter", org.id),
            &org.admin,
            Some(
                json!({"type": "code", "language": "python", "source": source,
                        "packages": {"pip": ["greet==1.0"]}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["packages"], json!({"pip": ["greet==1.0"]}));
    assert_eq!(v["packages_install"]["state"], "installing", "{v}");
    let state = installed_state(&app, &org, "greeter").await;
    assert_eq!(state["state"], "ready", "{state:#}");
    assert_eq!(
        state["lock"],
        format!("greet==1.0 --hash=sha256:{greet_sha}\n")
    );
    let r = run(&app, &org, "greeter", json!({})).await;
    assert_eq!(r["output"]["said"], "hello from greet", "{r:#}");
    // An executor with packages is as warm as one without.
    wait_until("a warm run with packages", || async {
        let r = run(&app, &org, "greeter", json!({})).await;
        assert_eq!(r["output"]["said"], "hello from greet", "{r:#}");
        r["output"]["warm"] == "1"
    })
    .await;

    // A package the index does not have: the install fails with pip's words, and so do runs.
    put_executor(
        &app,
        &org,
        "broken",
        json!({"type": "code", "language": "python", "source": source,
               "packages": {"pip": ["nosuch==1.0"]}}),
    )
    .await;
    let state = installed_state(&app, &org, "broken").await;
    assert_eq!(state["state"], "failed", "{state:#}");
    assert!(
        state["output"]
            .as_str()
            .is_some_and(|o| o.contains("No matching distribution")),
        "{state:#}"
    );
    let r = run(&app, &org, "broken", json!({})).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("packages failed to install")),
        "{r:#}"
    );
    // What cannot be installed here is refused when saved.
    for (lang, packages) in [
        ("javascript", json!({"npm": ["lodash@4.17.21"]})),
        ("python", json!({"npm": ["lodash@4.17.21"]})),
        (
            "python",
            json!({"pip": ["-e git+https://example.com/x.git"]}),
        ),
    ] {
        let (s, v) = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{}/executors/refused", org.id),
                &org.admin,
                Some(json!({"type": "code", "language": lang,
                            "source": "function main() { return 1; }", "packages": packages})),
            )
            .await;
        assert_eq!(s, 422, "{lang} {packages}: {v}");
    }

    // Packages survive a restart: the directory is on disk, the state in the store.
    app.stop().await;
    let app = spawn_app_in(dir.path(), with_index).await;
    let r = run(&app, &org, "greeter", json!({})).await;
    assert_eq!(r["output"]["said"], "hello from greet", "{r:#}");
    app.stop().await;
}

/// Builds an npm tarball of `name@version` (`package/package.json` with `scripts`, and
/// `package/index.js` holding `code`) into file `OUT`; prints its sha512 integrity and sha1.
const TARBALL: &str = r#"
import base64, hashlib, io, json, sys, tarfile
name, version, code, scripts, out = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
files = {"package/package.json": json.dumps({"name": name, "version": version, "main": "index.js", "scripts": scripts}).encode(),
         "package/index.js": code.encode()}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for path, data in files.items():
        info = tarfile.TarInfo(path)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
data = buf.getvalue()
open(out, "wb").write(data)
sys.stdout.write("sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() + " " + hashlib.sha1(data).hexdigest())
"#;

/// An npm package's tarball and its digests.
struct Tarball {
    name: &'static str,
    scripts: serde_json::Value,
    bytes: Vec<u8>,
    integrity: String,
    shasum: String,
}

fn tarball(name: &'static str, code: &str, scripts: serde_json::Value) -> Tarball {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("p.tgz");
    let out = std::process::Command::new("python3")
        .args(["-c", TARBALL, name, "1.0.0", code, &scripts.to_string()])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).expect("digests");
    let (integrity, shasum) = said.split_once(' ').expect("two digests");
    Tarball {
        name,
        scripts,
        bytes: std::fs::read(&file).expect("tarball"),
        integrity: integrity.into(),
        shasum: shasum.into(),
    }
}

/// An npm registry under `/npm/`: each package's document (`/npm/NAME`) and tarball.
async fn serve_registry(packages: Vec<Tarball>) -> std::net::SocketAddr {
    let packages = Arc::new(packages);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let docs = packages.clone();
    let app = axum::Router::new()
        .route(
            "/npm/{name}",
            axum::routing::get(move |axum::extract::Path(name): axum::extract::Path<String>| {
                let docs = docs.clone();
                async move {
                    let p = docs.iter().find(|p| p.name == name).ok_or(axum::http::StatusCode::NOT_FOUND)?;
                    let tarball = format!("http://{addr}/npm/{name}/-/{name}-1.0.0.tgz");
                    Ok::<_, axum::http::StatusCode>(axum::Json(serde_json::json!({
                        "name": name, "dist-tags": {"latest": "1.0.0"},
                        "versions": {"1.0.0": {"name": name, "version": "1.0.0",
                            // As the public registry says of a package with install scripts.
                            "scripts": p.scripts,
                            "hasInstallScript": p.scripts.as_object().is_some_and(|s| !s.is_empty()),
                            "dist": {"tarball": tarball, "integrity": p.integrity, "shasum": p.shasum}}}
                    })))
                }
            }),
        )
        .route(
            "/npm/{name}/-/{file}",
            axum::routing::get(move |axum::extract::Path((name, _)): axum::extract::Path<(String, String)>| {
                let packages = packages.clone();
                async move {
                    packages
                        .iter()
                        .find(|p| p.name == name)
                        .map(|p| p.bytes.clone())
                        .ok_or(axum::http::StatusCode::NOT_FOUND)
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_installs_without_running_install_scripts_and_node_code_requires_it() {
    use crate::executors::run;
    use serde_json::json;
    let pad = tarball("padder", "exports.pad = (s) => '[' + s + ']';", json!({}));
    // Its install scripts would leave a file where the install is written: they never run.
    let scripted = tarball(
        "scripted",
        "exports.ok = true;",
        json!({"preinstall": "node -e \"require('fs').writeFileSync('/out/pwned-pre', 'x')\"",
               "install": "node -e \"require('fs').writeFileSync('/out/pwned', 'x')\""}),
    );
    let registry = serve_registry(vec![pad, scripted]).await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("packages");
    let pkgs = packages(&root, registry, 16).await;
    let installed = pkgs
        .install_npm(&["padder@1.0.0".into(), "scripted@1.0.0".into()])
        .await
        .expect("installed");
    assert!(installed.key.starts_with("npm-"), "{}", installed.key);
    assert!(installed.dir.join("node_modules/padder/index.js").is_file());
    assert!(
        installed.lock.contains("\"node_modules/padder\""),
        "{}",
        installed.lock
    );
    for marker in ["pwned", "pwned-pre"] {
        assert!(
            !installed.dir.join(marker).exists(),
            "an install script ran: {marker}"
        );
    }
    // Another node installs the same lock (`npm ci`): the same directory name and content.
    let other = packages(&dir.path().join("other-node"), registry, 16).await;
    let again = other
        .ensure(&installed.key, &installed.lock)
        .await
        .expect("installed from the lock");
    assert!(again.join("node_modules/padder/index.js").is_file());
    failed_with(pkgs.install_npm(&["nosuch@1.0.0".into()]).await, "404");
    // An operator who allows install scripts gets them run, in the installer's sandbox (what
    // they write lands in the install), into a directory of its own (not the one without).
    let scripts_on = crate::packages::installer_for(PackageSettings {
        install_scripts: true,
        ..settings_for(&dir.path().join("scripts-on"), registry)
    })
    .await;
    let ran = scripts_on
        .install_npm(&["scripted@1.0.0".into()])
        .await
        .expect("installed with its scripts");
    assert!(
        ran.dir.join("pwned").is_file(),
        "the install script did not run"
    );
    let without = pkgs
        .install_npm(&["scripted@1.0.0".into()])
        .await
        .expect("installed without");
    assert_eq!(ran.lock, without.lock);
    assert_ne!(ran.key, without.key);

    // Through the hub: a Node.js executor requires what it declared.
    let with_registry = |s: &mut switchyard::Settings| {
        s.packages = Some(settings_for(&root, registry));
    };
    let app = spawn_app_in(dir.path(), with_registry).await;
    let org = app.org("npm-pkgs").await;
    crate::executors::put_executor(
        &app,
        &org,
        "padding",
        json!({"type": "code", "language": "node",
               "source": "const { pad } = require('padder');\nfunction main(input) { return { said: pad(input.s) }; }",
               "packages": {"npm": ["padder@1.0.0"]}}),
    )
    .await;
    let state = installed_state(&app, &org, "padding").await;
    assert_eq!(state["state"], "ready", "{state:#}");
    let r = run(&app, &org, "padding", json!({"s": "x"})).await;
    assert_eq!(r["output"], json!({"said": "[x]"}), "{r:#}");
    app.stop().await;
}

/// Another node's `other` installs `installed` from its lock, asked twice at the same time:
/// one directory, named as on the first node, and `downloads` files fetched from `served`.
pub(crate) async fn ensured_once(
    other: &Packages,
    installed: &switchyard_exec::packages::Installed,
    served: &std::sync::atomic::AtomicUsize,
    downloads: usize,
) -> std::path::PathBuf {
    let before = served.load(std::sync::atomic::Ordering::SeqCst);
    let (a, b) = tokio::join!(
        other.ensure(&installed.key, &installed.lock),
        other.ensure(&installed.key, &installed.lock)
    );
    let (a, b) = (a.expect("ensured"), b.expect("ensured"));
    assert_eq!(a, b);
    assert_eq!(a, other.dir_of(&installed.key));
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst) - before,
        downloads,
        "each file downloaded once"
    );
    a
}

pub(crate) fn failed_with<T: std::fmt::Debug>(r: Result<T, InstallFailed>, needle: &str) {
    let e = r.expect_err("an install that cannot succeed");
    assert!(
        matches!(e, InstallFailed::Installer(_)) && e.to_string().contains(needle),
        "expected `{needle}`: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_a_stop_cut_short_starts_again() {
    use serde_json::json;
    let greet = wheel(
        "greet",
        "1.0",
        "def hello():\n    return 'hello again'\n",
        10,
    );
    let (good, _) = serve_index(vec![("greet", "greet-1.0-py3-none-any.whl".into(), greet)]).await;
    // An index that never answers: the install is still going when the hub stops.
    let stuck = serve_on_loopback(axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "never"
    }))
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("packages");
    let app = spawn_app_in(dir.path(), |s| {
        s.packages = Some(settings_for(&root, stuck))
    })
    .await;
    let org = app.org("cut-short").await;
    crate::executors::put_executor(
        &app,
        &org,
        "greeter",
        json!({"type": "code", "language": "python",
               "source": "import greet\ndef main(input, sdk):\n    return {'said': greet.hello()}\n",
               "packages": {"pip": ["greet==1.0"]}}),
    )
    .await;
    let (_, v) = app
        .get(
            &format!("/v1/orgs/{}/executors/greeter", org.id),
            &org.admin,
        )
        .await;
    assert_eq!(v["packages_install"]["state"], "installing", "{v}");
    app.stop().await;
    // Started again (here against an index that answers), the install finishes.
    let app = spawn_app_in(dir.path(), |s| s.packages = Some(settings_for(&root, good))).await;
    let state = installed_state(&app, &org, "greeter").await;
    assert_eq!(state["state"], "ready", "{state:#}");
    let r = crate::executors::run(&app, &org, "greeter", json!({})).await;
    assert_eq!(r["output"]["said"], "hello again", "{r:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folders_requirements_file_is_tested_pushed_and_pulled() {
    use serde_json::json;
    let greet = wheel(
        "greet",
        "1.0",
        "def hello():\n    return 'hello from a folder'\n",
        10,
    );
    let (index, _) = serve_index(vec![("greet", "greet-1.0-py3-none-any.whl".into(), greet)]).await;
    let work = tempfile::tempdir().expect("dir");
    let folder = work.path().join("executors");
    std::fs::create_dir_all(folder.join("tests/greeter")).expect("folder");
    let write = |p: &str, t: String| std::fs::write(folder.join(p), t).expect("write");
    write(
        "executors.json",
        json!({"greeter": {"type": "code", "language": "python", "source_file": "greeter.py",
                           "packages_file": "greeter.requirements.txt"}})
        .to_string(),
    );
    write(
        "greeter.py",
        "import greet\ndef main(input, sdk):\n    return {'said': greet.hello()}\n".into(),
    );
    write(
        "greeter.requirements.txt",
        "# what greeter imports\ngreet==1.0\n".into(),
    );
    write(
        "tests/greeter/hello.json",
        json!({"input": {}, "expect": {"output": {"said": "hello from a folder"}}}).to_string(),
    );
    // `executors test`: a local hub installs the packages from the index given, then runs the case.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["executors", "test"])
        .arg(&folder)
        .args(["--allow-destination", "127.0.0.0/8", "--pip-index-url"])
        .arg(format!("http://{index}/simple/"))
        .output()
        .await
        .expect("executors test");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("PASS greeter/hello"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // push sends the requirements as `packages`; pull writes them back as the same file.
    let root = work.path().join("packages");
    let app = spawn_app_in(work.path(), |s| {
        s.packages = Some(settings_for(&root, index))
    })
    .await;
    let org = app.org("folder-pkgs").await;
    let cli = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        c.args(args)
            .env("SWITCHYARD_URL", app.url(""))
            .env("SWITCHYARD_KEY", &org.admin)
            .env("SWITCHYARD_ORG", &org.id);
        c
    };
    let out = cli(&["executors", "push"])
        .arg(&folder)
        .output()
        .await
        .expect("push");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = installed_state(&app, &org, "greeter").await;
    assert_eq!(state["state"], "ready", "{state:#}");
    let out = cli(&["executors", "push"])
        .arg(&folder)
        .output()
        .await
        .expect("push");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("greeter: unchanged (v1)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pulled = work.path().join("pulled");
    let out = cli(&["executors", "pull"])
        .arg(&pulled)
        .output()
        .await
        .expect("pull");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(pulled.join("greeter.requirements.txt")).expect("file"),
        "greet==1.0\n"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pulled.join("executors.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(
        manifest["greeter"]["packages_file"],
        "greeter.requirements.txt"
    );
    app.stop().await;
}

/// The public registries, as a hub with the default `[packages]` settings reaches them (CI
/// reaches them; a machine without the internet fails here, saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_npm_install_from_the_public_registries() {
    let helper = Path::new(env!("CARGO_BIN_EXE_switchyard")).to_path_buf();
    let isolation = tokio::task::spawn_blocking(move || Isolation::probe(Some(&helper)))
        .await
        .expect("probe");
    let settings = PackageSettings {
        root: tempfile::tempdir().expect("dir").keep().join("packages"),
        pip_index: "https://pypi.org/simple/".parse().expect("url"),
        npm_registry: "https://registry.npmjs.org/".parse().expect("url"),
        composer_repository: "https://repo.packagist.org/".parse().expect("url"),
        file_hosts: vec!["https://files.pythonhosted.org/".parse().expect("url")],
        install_scripts: false,
        max_mb: 64,
        timeout: Duration::from_secs(300),
    };
    // The registries' addresses as this machine resolves them are allowed whatever range they
    // are in: some build machines answer with their egress proxy's address, in a range the
    // guard refuses by default (an operator there passes --allow-destination likewise).
    let mut allow = Vec::new();
    for host in ["pypi.org", "files.pythonhosted.org", "registry.npmjs.org"] {
        for addr in tokio::net::lookup_host((host, 443)).await.expect("DNS") {
            allow.push(ipnet::IpNet::from(addr.ip()));
        }
    }
    let policy = EgressPolicy {
        allow,
        require_https: false,
    };
    let proxy = IndexProxy::new(settings.indexes(), policy);
    let pkgs = Packages::new(settings, Installer::new(isolation, proxy));
    let six = pkgs
        .install_pip(&["six==1.16.0".into()])
        .await
        .expect("six from pypi.org (does this machine reach it?)");
    assert!(
        six.lock.starts_with("six==1.16.0 --hash=sha256:"),
        "{}",
        six.lock
    );
    assert!(six.dir.join("six.py").is_file());
    let is_number = pkgs
        .install_npm(&["is-number@7.0.0".into()])
        .await
        .expect("is-number from registry.npmjs.org (does this machine reach it?)");
    assert!(
        is_number
            .dir
            .join("node_modules/is-number/index.js")
            .is_file()
    );
    assert!(
        is_number.lock.contains("\"integrity\": \"sha512-"),
        "{}",
        is_number.lock
    );
}
