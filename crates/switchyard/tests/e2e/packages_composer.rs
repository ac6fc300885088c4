//! Executors' Composer packages, installed: Composer resolves against a Composer repository
//! this test serves (zip archives it builds), in the installer's sandbox through the hub's index
//! proxy, with no scripts and no plugins; a PHP executor loads them through
//! `vendor/autoload.php`; a package that is not there and one over the size limit fail with
//! the reason, and a plugin's code never runs.

use crate::helpers::*;
use crate::packages::{failed_with, installed_state, installer_for, packages, settings_for};
use serde_json::{Value, json};
use std::sync::Arc;

/// Builds a zip archive holding `FILES` (a JSON object path → text) under one top directory,
/// into file `OUT`, with `PAD` more bytes of padding; prints its SHA-1 in hex.
const ZIP: &str = r#"
import hashlib, io, json, sys, zipfile
files, pad, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        z.writestr("package/" + path, text)
    if pad:
        z.writestr("package/data.bin", b"x" * pad)
open(out, "wb").write(buf.getvalue())
sys.stdout.write(hashlib.sha1(buf.getvalue()).hexdigest())
"#;

/// One package of the repository: its metadata (without `dist`) and its archive.
struct Dist {
    name: &'static str,
    meta: Value,
    bytes: Vec<u8>,
    sha1: String,
}

fn dist(name: &'static str, meta: Value, files: Value, pad: usize) -> Dist {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("p.zip");
    let out = std::process::Command::new("python3")
        .args(["-c", ZIP, &files.to_string(), &pad.to_string()])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Dist {
        name,
        meta,
        bytes: std::fs::read(&file).expect("zip"),
        sha1: String::from_utf8(out.stdout).expect("hex"),
    }
}

/// A Composer repository under `/composer/`: `packages.json` listing every package at 1.0.0,
/// and each archive. Also counts the archives it serves.
async fn serve_repository(
    dists: Vec<Dist>,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let dists = Arc::new(dists);
    let listing = dists.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route(
            "/composer/packages.json",
            axum::routing::get(move || {
                let listing = listing.clone();
                async move {
                    let mut packages = serde_json::Map::new();
                    for d in listing.iter() {
                        let mut meta = d.meta.clone();
                        meta["name"] = json!(d.name);
                        meta["version"] = json!("1.0.0");
                        meta["dist"] = json!({
                            "type": "zip",
                            "url": format!("http://{addr}/composer/dist/{}.zip", d.name.replace('/', "-")),
                            "shasum": d.sha1,
                        });
                        packages.insert(d.name.into(), json!({"1.0.0": meta}));
                    }
                    axum::Json(json!({"packages": packages}))
                }
            }),
        )
        .route(
            "/composer/dist/{file}",
            axum::routing::get(
                move |axum::extract::Path(file): axum::extract::Path<String>| {
                    let dists = dists.clone();
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        dists
                            .iter()
                            .find(|d| format!("{}.zip", d.name.replace('/', "-")) == file)
                            .map(|d| d.bytes.clone())
                            .ok_or(axum::http::StatusCode::NOT_FOUND)
                    }
                },
            ),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, served)
}

/// `acme/greet` (a PSR-4 class), `acme/plugin` (a Composer plugin whose activation would write
/// a file where the install is written), `acme/big` (20 MB once unpacked).
fn repository() -> Vec<Dist> {
    let greet = dist(
        "acme/greet",
        json!({"type": "library", "autoload": {"psr-4": {"Acme\\Greet\\": "src/"}}}),
        json!({"src/Hello.php": "<?php\nnamespace Acme\\Greet;\nclass Hello { public static function say(string $s): string { return 'hello ' . $s; } }\n"}),
        0,
    );
    let plugin = dist(
        "acme/plugin",
        json!({"type": "composer-plugin", "require": {"composer-plugin-api": "^2.0"},
               "extra": {"class": "Acme\\Plugin\\Evil"},
               "autoload": {"psr-4": {"Acme\\Plugin\\": "src/"}},
               "scripts": {"post-install-cmd": "touch /out/pwned-script"}}),
        json!({"src/Evil.php": "<?php\nnamespace Acme\\Plugin;\nuse Composer\\Composer; use Composer\\IO\\IOInterface; use Composer\\Plugin\\PluginInterface;\nclass Evil implements PluginInterface {\n public function activate(Composer $c, IOInterface $io) { file_put_contents('/out/pwned', 'x'); }\n public function deactivate(Composer $c, IOInterface $io) {}\n public function uninstall(Composer $c, IOInterface $io) {}\n}\n"}),
        0,
    );
    let big = dist("acme/big", json!({"type": "library"}), json!({}), 20 << 20);
    vec![greet, plugin, big]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composer_installs_without_plugins_or_scripts_and_php_code_autoloads_it() {
    use crate::executors::run;
    let (repo, served) = serve_repository(repository()).await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("packages");
    let pkgs = packages(&root, repo, 16).await;

    let require = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let installed = pkgs
        .install_composer(&require(&[
            ("acme/greet", "^1.0"),
            ("acme/plugin", "1.0.0"),
        ]))
        .await
        .expect("installed");
    assert!(installed.key.starts_with("composer-"), "{}", installed.key);
    assert!(installed.dir.join("vendor/autoload.php").is_file());
    assert!(
        installed
            .dir
            .join("vendor/acme/greet/src/Hello.php")
            .is_file()
    );
    let lock: Value = serde_json::from_str(&installed.lock).expect("composer.lock");
    let locked: Vec<&str> = lock["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(locked, ["acme/greet", "acme/plugin"], "{lock:#}");
    // The plugin was installed as files; neither its code nor a script ran.
    assert!(
        installed
            .dir
            .join("vendor/acme/plugin/src/Evil.php")
            .is_file()
    );
    for marker in ["pwned", "pwned-script", "vendor/pwned"] {
        assert!(
            !installed.dir.join(marker).exists(),
            "a package's code ran: {marker}"
        );
    }
    // An operator who allows them gets plugins run, in the installer's sandbox, into a
    // directory of its own.
    let plugins_on = installer_for(switchyard_exec::packages::PackageSettings {
        install_scripts: true,
        ..settings_for(&dir.path().join("plugins-on"), repo)
    })
    .await;
    let ran = plugins_on
        .install_composer(&require(&[
            ("acme/greet", "^1.0"),
            ("acme/plugin", "1.0.0"),
        ]))
        .await
        .expect("installed with its plugin");
    assert!(ran.dir.join("pwned").is_file(), "the plugin did not run");
    assert_ne!(ran.key, installed.key);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(installed.dir.join("vendor/autoload.php"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "the packages are writable: {mode:o}");

    // Another node installs the same lock: the same directory name and the same files, the
    // archives downloaded once however many runs ask at the same time.
    let other = packages(&dir.path().join("other-node"), repo, 16).await;
    let a = crate::packages::ensured_once(&other, &installed, &served, 2).await;
    for file in ["vendor/autoload.php", "vendor/composer/autoload_static.php"] {
        assert_eq!(
            std::fs::read(a.join(file)).expect("installed from the lock"),
            std::fs::read(installed.dir.join(file)).expect("installed"),
            "{file} differs between nodes"
        );
    }

    failed_with(
        pkgs.install_composer(&require(&[("acme/nosuch", "^1.0")]))
            .await,
        "could not be found",
    );
    failed_with(
        pkgs.install_composer(&require(&[("acme/big", "^1.0")]))
            .await,
        "disk full",
    );
    let refused = pkgs
        .install_composer(&require(&[("acme/greet", "dev-main#abc; rm -rf /")]))
        .await
        .expect_err("not a constraint");
    assert!(
        matches!(
            refused,
            switchyard_exec::packages::InstallFailed::Refused(_)
        ),
        "{refused}"
    );

    // Through the hub: a PHP executor uses what it declared, by the autoloader the runner
    // loads and by `vendor/autoload.php` beside its code, cold and warm.
    let with_repo = |s: &mut switchyard::Settings| {
        s.packages = Some(settings_for(&root, repo));
    };
    let app = spawn_app_in(dir.path(), with_repo).await;
    let org = app.org("composer-pkgs").await;
    let source = "<?php\nrequire_once __DIR__ . '/vendor/autoload.php';\nfunction main($in, $sdk) {\n  return ['said' => \\Acme\\Greet\\Hello::say($in['s']), 'warm' => (string)getenv('SWITCHYARD_WARM')];\n}\n";
    crate::executors::put_executor(
        &app,
        &org,
        "greeter",
        json!({"type": "code", "language": "php", "source": source,
               "packages": {"composer": {"acme/greet": "^1.0"}}}),
    )
    .await;
    let state = installed_state(&app, &org, "greeter").await;
    assert_eq!(state["state"], "ready", "{state:#}");
    assert!(
        state["lock"]
            .as_str()
            .is_some_and(|l| l.contains("\"acme/greet\"")),
        "{state:#}"
    );
    let r = run(&app, &org, "greeter", json!({"s": "x"})).await;
    assert_eq!(r["output"]["said"], "hello x", "{r:#}");
    wait_until("a warm PHP run with packages", || async {
        let r = run(&app, &org, "greeter", json!({"s": "y"})).await;
        assert_eq!(r["output"]["said"], "hello y", "{r:#}");
        r["output"]["warm"] == "1"
    })
    .await;
    // The install's failure is the executor's state, and its runs' error.
    crate::executors::put_executor(
        &app,
        &org,
        "broken",
        json!({"type": "code", "language": "php", "source": source,
               "packages": {"composer": {"acme/nosuch": "^1.0"}}}),
    )
    .await;
    let state = installed_state(&app, &org, "broken").await;
    assert_eq!(state["state"], "failed", "{state:#}");
    assert!(
        state["output"]
            .as_str()
            .is_some_and(|o| o.contains("could not be found")),
        "{state:#}"
    );
    let r = run(&app, &org, "broken", json!({"s": "x"})).await;
    assert_eq!(r["status"], "failed", "{r:#}");
    app.stop().await;
}
