//! The languages that run as child processes (Python, PHP, Node.js): each one's interpreter,
//! command line, SDK and runner files, where its interpreter is on the host, and the memory it
//! takes itself.

use crate::ExecError;
use crate::sandbox::give_to;
use std::path::{Path, PathBuf};
use switchyard_core::executor::Language;

const PY_SDK: &str = include_str!("../sdk/switchyard_sdk.py");
const PY_RUNNER: &str = include_str!("../sdk/runner.py");
const PHP_SDK: &str = include_str!("../sdk/switchyard_sdk.php");
const PHP_RUNNER: &str = include_str!("../sdk/runner.php");
const NODE_SDK: &str = include_str!("../sdk/switchyard_sdk.js");
const NODE_RUNNER: &str = include_str!("../sdk/runner.js");

/// The interpreter and files of one language.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub(crate) program: &'static str,
    pub(crate) args: Vec<String>,
    pub(crate) sdk_file: &'static str,
    sdk: &'static str,
    runner_file: &'static str,
    runner: &'static str,
    main_file: &'static str,
}

/// The interpreter and files of `language`; with `check`, the command line only compiles the
/// code (a syntax error fails, nothing of it runs).
pub(crate) fn runtime(language: Language, memory_mb: u32, check: bool) -> Option<Runtime> {
    let rt = runtime_to_run(language, memory_mb)?;
    if !check {
        return Some(rt);
    }
    let args = match language {
        // PHP's own lint: parses main.php, runs nothing.
        Language::Php => ["-n", "-d", "display_errors=stderr", "-l", "main.php"]
            .map(String::from)
            .to_vec(),
        _ => rt.args.clone(),
    };
    Some(Runtime { args, ..rt })
}

pub(crate) fn runtime_to_run(language: Language, memory_mb: u32) -> Option<Runtime> {
    match language {
        Language::Python => Some(Runtime {
            program: "python3",
            args: vec!["-I".into(), "runner.py".into()],
            sdk_file: "switchyard_sdk.py",
            sdk: PY_SDK,
            runner_file: "runner.py",
            runner: PY_RUNNER,
            main_file: "main.py",
        }),
        Language::Php => Some(Runtime {
            program: "php",
            args: vec![
                "-n".into(),
                "-d".into(),
                format!("memory_limit={memory_mb}M"),
                "-d".into(),
                "display_errors=stderr".into(),
                "runner.php".into(),
            ],
            sdk_file: "switchyard_sdk.php",
            sdk: PHP_SDK,
            runner_file: "runner.php",
            runner: PHP_RUNNER,
            main_file: "main.php",
        }),
        Language::Node => Some(Runtime {
            program: "node",
            args: vec![
                format!("--max-old-space-size={memory_mb}"),
                "runner.js".into(),
            ],
            sdk_file: "switchyard_sdk.js",
            sdk: NODE_SDK,
            runner_file: "runner.js",
            runner: NODE_RUNNER,
            main_file: "main.js",
        }),
        Language::Javascript => None,
    }
}

/// Whether the interpreter of `language` is installed; `Err` names what is missing.
pub fn interpreter_available(language: Language) -> Result<(), ExecError> {
    interpreter_path(language).map(|_| ())
}

/// Where the interpreter of `language` really is (symlinks resolved, so `php` through
/// `/etc/alternatives` names the binary itself: a run's root has no `/etc/alternatives`).
pub(crate) fn interpreter_path(language: Language) -> Result<PathBuf, ExecError> {
    let Some(rt) = runtime(language, 0, false) else {
        return Err(ExecError::Unavailable(format!(
            "{} does not run as a child process",
            language.as_str()
        )));
    };
    use std::os::unix::fs::PermissionsExt;
    SEARCH_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(rt.program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| {
            ExecError::Unavailable(format!(
                "{} executors need `{}`, which is not installed on this instance",
                language.as_str(),
                rt.program
            ))
        })
}

/// What a run must see of the host besides the granted trees to start `program`: nothing when
/// it lives under `/usr`, else its installation prefix (`/opt/node/bin/node` → `/opt/node`).
pub(crate) fn program_tree(program: &Path) -> Vec<PathBuf> {
    if crate::sandbox_exec::ROOT_TREES
        .iter()
        .any(|t| program.starts_with(t))
    {
        return Vec::new();
    }
    let prefix = program.parent().and_then(Path::parent);
    match prefix {
        Some(p) if p != Path::new("/") => vec![p.to_path_buf()],
        _ => vec![program.to_path_buf()],
    }
}

/// Memory the interpreter itself takes before user code runs (measured: Python 13 MB, PHP
/// 15 MB, Node.js 40 MB resident), with room for what it loads on demand.
pub(crate) fn interpreter_mb(language: Language) -> u32 {
    match language {
        Language::Node => 64,
        _ => 32,
    }
}

/// The kernel's memory limit of a run, in MiB: what the code may use (`memory_mb`), its
/// temporary files (a tmpfs is memory) and the interpreter itself.
pub fn kernel_memory_mb(language: Language, memory_mb: u32, tmp_mb: u32) -> u32 {
    memory_mb + tmp_mb + interpreter_mb(language)
}

/// Where interpreters are looked for (also the children's PATH).
pub(crate) const SEARCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Writes the run's files: the SDK and the runner, and the code and its input unless a warm
/// interpreter is to be sent them.
pub(crate) fn write_run_dir(
    dir: &Path,
    rt: &Runtime,
    code: Option<(&str, &str)>,
    owner: Option<u32>,
) -> std::io::Result<()> {
    std::fs::write(dir.join(rt.sdk_file), rt.sdk)?;
    std::fs::write(dir.join(rt.runner_file), rt.runner)?;
    let mut files = vec![rt.sdk_file, rt.runner_file];
    if let Some((main, input)) = code {
        std::fs::write(dir.join(rt.main_file), main)?;
        std::fs::write(dir.join("input.json"), input)?;
        files.extend([rt.main_file, "input.json"]);
    }
    if let Some(uid) = owner {
        give_to(dir, uid)?;
        for f in files {
            give_to(&dir.join(f), uid)?;
        }
    }
    Ok(())
}
