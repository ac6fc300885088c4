//! `switchyard executors pull|push DIR`: an organization's executors as files in a folder —
//! one source file per code executor and a manifest, `executors.json`, with the rest of each
//! definition — so they live in Git and go through review and CI.
//!
//! `pull` writes what the hub has. `push` sends each executor of the manifest whose settings or
//! source differ from the hub's (a new version), and leaves the rest alone; a setting the
//! manifest leaves out takes the hub's default when the executor is pushed.

use super::{Failure, Hub, HubArgs, read};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use switchyard_core::ids::is_valid_name;
use switchyard_core::packages::PackageSet;
use switchyard_wire::List;
use switchyard_wire::executors::{ExecutorIn, ExecutorOut};

/// The manifest's file name in the folder.
const MANIFEST: &str = "executors.json";
/// Largest source file `push` reads.
const MAX_SOURCE_BYTES: u64 = 1 << 20;

#[derive(Args, Debug, Clone)]
pub struct ExecutorsArgs {
    #[command(subcommand)]
    pub command: ExecutorsCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ExecutorsCommand {
    /// Write the organization's executors into a folder (sources and `executors.json`).
    #[command(
        after_help = "Example:\n  switchyard executors pull ./executors && git -C ./executors diff"
    )]
    Pull(FolderArgs),
    /// Send the folder's executors to the hub: each one that differs becomes a new version.
    #[command(after_help = "Example:\n  switchyard executors push ./executors")]
    Push(FolderArgs),
    /// Run the folder's executors against its fixtures (`tests/EXECUTOR/CASE.json`) on a local
    /// hub of their own, with the hub's runtime; exits 1 when a case fails.
    #[command(after_help = "Example:\n  switchyard executors test ./executors\n\n\
        A fixture, tests/enrich/high-priority.json:\n  \
        {\"input\": {\"ticketId\": 7}, \"secrets\": {\"CRM_TOKEN\": \"test\"},\n   \
        \"expect\": {\"output\": {\"priority\": \"high\"}, \"logs\": [\"ticket 7\"]}}\n\
        `expect` may also name an `error` the run must fail with; without `expect` a case\n\
        passes when its run succeeds.")]
    Test(Box<super::executors_test::TestArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The folder holding `executors.json` and the sources.
    pub dir: PathBuf,
}

/// The source file's extension for a language.
fn extension(language: &str) -> &'static str {
    match language {
        "python" => "py",
        "php" => "php",
        "node" => "node.js",
        _ => "js",
    }
}

/// An executor's definition as the manifest holds it: the hub's, without the source (which
/// goes to its own file) and without what the hub keeps for itself.
fn manifest_entry(current: &ExecutorOut, source_file: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(spec) = current.spec.as_object() {
        for (k, v) in spec {
            if k != "source" {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(f) = source_file {
        m.insert("source_file".into(), json!(f));
    }
    if !current.description.is_empty() {
        m.insert("description".into(), json!(current.description));
    }
    if let Some(p) = &current.parameters {
        m.insert("parameters".into(), json!(p));
    }
    if let Some(r) = current.retries {
        m.insert("retries".into(), json!(r));
    }
    if let Some(t) = &current.tool {
        m.insert("tool".into(), json!(t));
    }
    if let Some(p) = &current.packages {
        m.insert("packages".into(), json!(p));
    }
    Value::Object(m)
}

pub async fn run(args: ExecutorsArgs) -> Result<(), Failure> {
    match args.command {
        ExecutorsCommand::Pull(f) => pull(f).await,
        ExecutorsCommand::Push(f) => push(f).await,
        ExecutorsCommand::Test(t) => super::executors_test::test(*t).await,
    }
}

async fn pull(args: FolderArgs) -> Result<(), Failure> {
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let list: List<ExecutorOut> = read(&hub.get("/executors").await?)?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", args.dir.display())))?;
    let mut manifest = Map::new();
    for ex in &list.data {
        let name = ex.name.as_str();
        if !is_valid_name(name, 200) || name.contains(['/', '\\']) {
            continue;
        }
        let source_file = match (ex.spec["source"].as_str(), ex.spec["language"].as_str()) {
            (Some(source), Some(language)) => {
                let file = format!("{name}.{}", extension(language));
                write(&args.dir.join(&file), source)?;
                Some(file)
            }
            _ => None,
        };
        let mut entry = manifest_entry(ex, source_file.as_deref());
        if let Some((file, text)) = ex.packages.as_ref().and_then(|p| packages_file(name, p)) {
            write(&args.dir.join(&file), &text)?;
            if let Some(m) = entry.as_object_mut() {
                m.remove("packages");
                m.insert("packages_file".into(), json!(file));
            }
        }
        manifest.insert(name.to_string(), entry);
        if !hub.json() {
            println!("{name}: v{}", ex.version);
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(manifest.clone()))
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    write(&args.dir.join(MANIFEST), &(text + "\n"))?;
    if hub.json() {
        println!("{}", Value::Object(manifest));
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))
}

/// An executor's packages as its language's own manifest beside its source: pip's
/// `NAME.requirements.txt`, npm's `NAME.package.json`, Composer's `NAME.composer.json`.
fn packages_file(name: &str, p: &PackageSet) -> Option<(String, String)> {
    if !p.pip.is_empty() {
        return Some((format!("{name}.requirements.txt"), p.pip.join("\n") + "\n"));
    }
    if !p.npm.is_empty() {
        let deps: Map<String, Value> = p
            .npm
            .iter()
            .map(|spec| match spec[1..].rfind('@') {
                Some(at) => (spec[..=at].to_string(), json!(&spec[at + 2..])),
                None => (spec.clone(), json!("*")),
            })
            .collect();
        let text = serde_json::to_string_pretty(&json!({"dependencies": deps})).ok()?;
        return Some((format!("{name}.package.json"), text + "\n"));
    }
    if !p.composer.is_empty() {
        let text = serde_json::to_string_pretty(&json!({"require": p.composer})).ok()?;
        return Some((format!("{name}.composer.json"), text + "\n"));
    }
    None
}

/// The packages a manifest file declares, by its kind (its name's end): a requirements file,
/// a `package.json` (`dependencies`) or a `composer.json` (`require`).
fn read_packages_file(file: &str, text: &str) -> Result<PackageSet, String> {
    let mut set = PackageSet::default();
    if file.ends_with("requirements.txt") {
        set.pip = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
    } else if file.ends_with("package.json") {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        for (pkg, version) in v["dependencies"].as_object().into_iter().flatten() {
            let version = version
                .as_str()
                .ok_or("a dependency's version is not text")?;
            set.npm.push(format!("{pkg}@{version}"));
        }
    } else if file.ends_with("composer.json") {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        for (pkg, constraint) in v["require"].as_object().into_iter().flatten() {
            let constraint = constraint
                .as_str()
                .ok_or("a requirement's constraint is not text")?;
            set.composer.insert(pkg.clone(), constraint.to_string());
        }
    } else {
        return Err(
            "a packages file is a requirements.txt, a package.json or a composer.json".into(),
        );
    }
    Ok(set)
}

/// Reads a source file named by the manifest, inside the folder and at most 1 MiB.
fn read_source(dir: &Path, file: &str) -> Result<String, Failure> {
    if file.contains("..") || Path::new(file).is_absolute() {
        return Err(Failure::Usage(format!(
            "`source_file` {file}: name a file inside the folder"
        )));
    }
    let path = dir.join(file);
    let meta = std::fs::metadata(&path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(Failure::Usage(format!(
            "{} is larger than 1 MiB",
            path.display()
        )));
    }
    std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

/// An executor of the manifest: its name and the body of its `PUT` (with its source read in).
pub(super) type Definition = (String, ExecutorIn);

/// The manifest's executors.
pub(super) fn read_manifest(dir: &Path) -> Result<Vec<Definition>, Failure> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let manifest: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "{} is not a JSON object of executors: {e}",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for (name, entry) in manifest {
        let Some(entry) = entry.as_object() else {
            return Err(Failure::Usage(format!(
                "{MANIFEST}: `{name}` is not an object"
            )));
        };
        let mut body = entry.clone();
        if let Some(file) = body.remove("source_file") {
            let file = file.as_str().ok_or_else(|| {
                Failure::Usage(format!(
                    "{MANIFEST}: `{name}.source_file` is not a file name"
                ))
            })?;
            body.insert("source".into(), json!(read_source(dir, file)?));
        }
        if let Some(file) = body.remove("packages_file") {
            let file = file.as_str().ok_or_else(|| {
                Failure::Usage(format!(
                    "{MANIFEST}: `{name}.packages_file` is not a file name"
                ))
            })?;
            let packages = read_packages_file(file, &read_source(dir, file)?)
                .map_err(|e| Failure::Usage(format!("{MANIFEST}: `{name}`: {file}: {e}")))?;
            body.insert("packages".into(), json!(packages));
        }
        let body: ExecutorIn = serde_json::from_value(Value::Object(body))
            .map_err(|e| Failure::Usage(format!("{MANIFEST}: `{name}`: {e}")))?;
        out.push((name, body));
    }
    Ok(out)
}

async fn push(args: FolderArgs) -> Result<(), Failure> {
    let manifest = read_manifest(&args.dir)?;
    let hub = Hub::new(args.hub.clone()).map_err(|e| Failure::Unavailable(e.to_string()))?;
    let mut report = Map::new();
    for (name, body) in manifest {
        let current: Option<ExecutorOut> = match hub.get(&format!("/executors/{name}")).await {
            Ok(v) => Some(read(&v)?),
            Err(Failure::Refused(m)) if m.starts_with("404") => None,
            Err(e) => return Err(e),
        };
        // Same when every setting the manifest gives is the hub's.
        let wanted = serde_json::to_value(&body).map_err(|e| Failure::Usage(e.to_string()))?;
        let same = current.as_ref().is_some_and(|c| {
            let hub_has = serde_json::to_value(c).unwrap_or_default();
            wanted
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| match k.as_str() {
                    "description" | "parameters" | "retries" | "packages" => {
                        hub_has.get(k) == Some(v)
                    }
                    // A tool's settings left out are the hub's defaults.
                    "tool" => v.as_object().is_some_and(|t| {
                        t.iter().all(|(tk, tv)| hub_has["tool"].get(tk) == Some(tv))
                    }),
                    _ => c.spec.get(k) == Some(v),
                })
        });
        let outcome = if same {
            format!("unchanged (v{})", current.as_ref().map_or(0, |c| c.version))
        } else {
            let saved = hub
                .call(reqwest::Method::PUT, &format!("/executors/{name}"), &body)
                .await
                .map_err(|e| match e {
                    Failure::Refused(m) => Failure::Refused(format!("{name}: {m}")),
                    other => other,
                })?;
            let verb = if current.is_some() {
                "updated"
            } else {
                "created"
            };
            format!("{verb} (v{})", read::<ExecutorOut>(&saved)?.version)
        };
        if !hub.json() {
            println!("{name}: {outcome}");
        }
        report.insert(name.clone(), json!(outcome));
    }
    if hub.json() {
        println!("{}", Value::Object(report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_go_to_their_languages_manifest_and_back() {
        let sets = [
            PackageSet {
                pip: vec!["requests==2.32.3".into(), "six".into()],
                ..Default::default()
            },
            PackageSet {
                npm: vec!["lodash@4.17.21".into(), "@scope/pkg@^1.2".into()],
                ..Default::default()
            },
            PackageSet {
                composer: [("guzzlehttp/guzzle".to_string(), "^7.9".to_string())].into(),
                ..Default::default()
            },
        ];
        for set in sets {
            let (file, text) = packages_file("ex", &set).expect("a file");
            assert!(file.starts_with("ex."), "{file}");
            assert_eq!(
                read_packages_file(&file, &text).expect("read"),
                set,
                "{file}:\n{text}"
            );
        }
        // A requirements file as people write them: comments and blank lines.
        let read = read_packages_file(
            "requirements.txt",
            "# deps\nrequests==2.32.3  # http\n\nsix\n",
        )
        .expect("read");
        assert_eq!(read.pip, vec!["requests==2.32.3", "six"]);
        assert!(read_packages_file("deps.yaml", "").is_err());
    }
}
