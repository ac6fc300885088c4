//! The worker's half: reads jobs, runs each in a fresh QuickJS runtime, relays SDK calls to the
//! hub and answers how the run ended.

use crate::protocol::{Failure, FromWorker, Job, SdkAnswer, line};
use rquickjs::{CatchResultExt, Context, Function, Runtime};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PRELUDE: &str = include_str!("prelude.js");
/// Most bytes of a run's output as JSON (the hub's cap: a larger output fails the run).
const OUTPUT_CAP: usize = 1024 * 1024;

/// Runs jobs from stdin until it closes. Returns the process exit code.
pub fn worker_main() -> i32 {
    let stdin = std::io::stdin();
    loop {
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let job: Job = match serde_json::from_str(&line) {
            Ok(j) => j,
            Err(e) => {
                send(&FromWorker::Done {
                    output: None,
                    error: Some(format!("bad job: {e}")),
                    failure: Some(Failure::Code),
                });
                continue;
            }
        };
        let done = run_job(&job);
        send(&done);
    }
}

fn send(message: &FromWorker) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&line(message));
    let _ = out.flush();
}

/// One SDK round trip: ask the hub on stdout, read its answer from stdin.
fn sdk_round_trip(req: String) -> String {
    let req: Value = serde_json::from_str(&req).unwrap_or(Value::Null);
    send(&FromWorker::Sdk { req });
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        Ok(n) if n > 0 => answer,
        _ => String::from_utf8_lossy(&SdkAnswer::error("the hub closed the SDK channel").line())
            .into_owned(),
    }
}

/// How a run ended badly: the kind of failure, and its words.
type Ended = (Failure, String);

/// The run succeeded with `output`.
fn done(output: Value) -> FromWorker {
    FromWorker::Done {
        output: Some(output),
        error: None,
        failure: None,
    }
}

/// The run failed: `error` in words, and its kind.
fn failed((failure, error): Ended) -> FromWorker {
    FromWorker::Done {
        output: None,
        error: Some(error),
        failure: Some(failure),
    }
}

/// A failure of the code itself.
fn code(error: impl Into<String>) -> Ended {
    (Failure::Code, error.into())
}

/// A fresh engine: `memory` bytes of heap, a 512 KiB stack, interrupted `timeout` from now.
/// The flag says whether the interrupt fired: a run stopped by it is a timeout, whatever words
/// the engine (or the code) put in the error.
fn engine(memory: usize, timeout: Duration) -> Result<(Runtime, Context, Arc<AtomicBool>), Ended> {
    let crashed = |what: &str, e: rquickjs::Error| (Failure::Crashed, format!("{what}: {e}"));
    let rt = Runtime::new().map_err(|e| crashed("cannot create a JavaScript runtime", e))?;
    rt.set_memory_limit(memory);
    rt.set_max_stack_size(512 * 1024);
    let deadline = Instant::now() + timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    rt.set_interrupt_handler(Some(Box::new(move || {
        let over = Instant::now() >= deadline;
        if over {
            flag.store(true, Ordering::Relaxed);
        }
        over
    })));
    let ctx = Context::full(&rt).map_err(|e| crashed("cannot create a JavaScript context", e))?;
    Ok((rt, ctx, fired))
}

/// Compiles `source` as a global script without running any of it. The engine's compile-only
/// flag is not in rquickjs's safe API, so this one call is made on the engine directly.
#[allow(unsafe_code)]
fn check_job(source: &str) -> FromWorker {
    let (_rt, ctx, _) = match engine(64 * 1024 * 1024, Duration::from_secs(5)) {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let Ok(text) = std::ffi::CString::new(source) else {
        return failed(code("the code holds a NUL character"));
    };
    let compiled = ctx.with(|ctx| {
        use rquickjs::qjs;
        // SAFETY: `text` outlives the call and is NUL-terminated; the length excludes the NUL.
        // The value JS_Eval answers is either an exception (read and cleared below) or a
        // compiled function owned by `Value::from_raw`, which frees it.
        unsafe {
            let value = qjs::JS_Eval(
                ctx.as_raw().as_ptr(),
                text.as_ptr(),
                source.len() as _,
                c"main.js".as_ptr(),
                (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32,
            );
            if qjs::JS_VALUE_GET_TAG(value) == qjs::JS_TAG_EXCEPTION {
                Err(describe(rquickjs::CaughtError::from_error(
                    &ctx,
                    rquickjs::Error::Exception,
                )))
            } else {
                drop(rquickjs::Value::from_raw(ctx.clone(), value));
                Ok(())
            }
        }
    });
    match compiled {
        Ok(()) => done(Value::Null),
        Err(e) => failed(code(e)),
    }
}

fn run_job(job: &Job) -> FromWorker {
    if job.check {
        return check_job(&job.source);
    }
    let source = job.source.clone();
    let input = job.input.to_string();
    let memory = job.memory_mb as usize * 1024 * 1024;
    let timeout = Duration::from_millis(job.timeout_ms);
    let (rt, ctx, fired) = match engine(memory, timeout) {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let interrupted = || fired.load(Ordering::Relaxed);
    let stopped = |e: String| interpret(e, timeout, interrupted());
    let started = ctx.with(|ctx| -> Result<(), Ended> {
        let globals = ctx.globals();
        let sdk = Function::new(ctx.clone(), sdk_round_trip).map_err(|e| stopped(e.to_string()))?;
        globals.set("__sdk", sdk).map_err(|e| stopped(e.to_string()))?;
        globals.set("__input", input).map_err(|e| stopped(e.to_string()))?;
        ctx.eval::<(), _>(PRELUDE)
            .catch(&ctx)
            .map_err(|e| stopped(format!("SDK prelude failed: {}", describe(e))))?;
        ctx.eval::<(), _>(source)
            .catch(&ctx)
            .map_err(|e| stopped(describe(e)))?;
        ctx.eval::<(), _>(
            r#"globalThis.__state = { done: false };
            (async () => {
              if (typeof main !== "function") throw new Error("define main(input, sdk)");
              return await main(JSON.parse(__input), sdk);
            })().then(
              (v) => {
                // Done only once the output exists: a stringify that fails (out of memory, a
                // cycle, a BigInt) is the run's error, never a missing output.
                try { __state.output = JSON.stringify(v === undefined ? null : v); }
                catch (e) { __state.error = "the output cannot be turned into JSON: " + ((e && e.name !== undefined) ? e.name + ": " + e.message : String(e)); }
                __state.done = true;
              },
              (e) => { __state.done = true; __state.error = (e && e.name !== undefined && e.message !== undefined) ? e.name + ": " + e.message : String(e); }
            );"#,
        )
        .catch(&ctx)
        .map_err(|e| stopped(describe(e)))
    });
    if let Err(e) = started {
        return failed(e);
    }
    loop {
        match rt.execute_pending_job() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                let msg = e.0.with(|ctx| {
                    describe(rquickjs::CaughtError::from_error(
                        &ctx,
                        rquickjs::Error::Exception,
                    ))
                });
                return failed(interpret(msg, timeout, interrupted()));
            }
        }
    }
    // The state's fields are read one by one: the output is checked against the cap while it
    // is still the engine's string, so a huge output is never copied out (nor wrapped in another
    // JSON document, which needs as much again).
    let state = ctx.with(|ctx| -> Result<RunState, Ended> {
        let state: rquickjs::Object = ctx
            .globals()
            .get("__state")
            .map_err(|e| stopped(format!("the run's state is gone: {e}")))?;
        let done: bool = state.get("done").unwrap_or(false);
        let error: Option<String> = state.get("error").ok().flatten();
        let output: Option<rquickjs::String> = state.get("output").ok().flatten();
        let output = match output {
            None => None,
            Some(text) => {
                let len: usize = ctx
                    .eval::<usize, _>("__state.output.length")
                    .map_err(|e| stopped(e.to_string()))?;
                // UTF-16 units: each is at least one byte of JSON.
                if len > OUTPUT_CAP {
                    return Err((
                        Failure::OutputLimit,
                        format!(
                            "output too large: the output is at least {len} bytes as JSON, more than {} MiB",
                            OUTPUT_CAP >> 20
                        ),
                    ));
                }
                Some(text.to_string().map_err(|e| stopped(e.to_string()))?)
            }
        };
        Ok(RunState {
            done,
            error,
            output,
        })
    });
    let state = match state {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    if !state.done {
        return failed(code(
            "main(input, sdk) never finished: its promise was left pending",
        ));
    }
    if let Some(err) = state.error {
        return failed(interpret(err, timeout, interrupted()));
    }
    match state.output.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(output)) => {
            let bytes = output.to_string().len();
            if bytes > OUTPUT_CAP {
                return failed((
                    Failure::OutputLimit,
                    format!(
                        "output too large: the output is {bytes} bytes as JSON, more than {} MiB",
                        OUTPUT_CAP >> 20
                    ),
                ));
            }
            done(output)
        }
        Some(Err(e)) => failed(code(format!("the output is not JSON: {e}"))),
        None => failed(code(
            "the output cannot be turned into JSON: main returned a function or a symbol",
        )),
    }
}

/// What `main` left in `__state`.
struct RunState {
    done: bool,
    error: Option<String>,
    output: Option<String>,
}

/// `Name: message (at line:column)` for a JavaScript exception, the engine's text otherwise.
fn describe(e: rquickjs::CaughtError<'_>) -> String {
    match e {
        rquickjs::CaughtError::Exception(ex) => {
            let name: String = ex.get("name").unwrap_or_else(|_| "Error".into());
            let message = ex.message().unwrap_or_default();
            let at = ex
                .stack()
                .and_then(|s| {
                    s.lines()
                        .next()
                        .map(|l| l.trim().trim_start_matches("at ").to_string())
                })
                .filter(|l| !l.is_empty());
            match at {
                Some(at) => format!("{name}: {message} (at {at})"),
                None => format!("{name}: {message}"),
            }
        }
        other => other.to_string(),
    }
}

/// Names the engine's own errors in words a user understands: `interrupted` says the deadline's
/// interrupt fired (then it is a timeout, whatever the message); running out of heap is known
/// only by the engine's words.
fn interpret(msg: String, timeout: Duration, interrupted: bool) -> Ended {
    if interrupted {
        (
            Failure::Timeout,
            format!(
                "timeout: the code ran longer than {} ms and was stopped",
                timeout.as_millis()
            ),
        )
    } else if msg.contains("out of memory") {
        (Failure::Memory, format!("memory limit: {msg}"))
    } else if msg.contains("stack overflow") {
        code(format!("stack overflow (recursion too deep): {msg}"))
    } else {
        code(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: &str, timeout_ms: u64) -> Job {
        Job {
            source: source.into(),
            input: Value::Null,
            memory_mb: 32,
            timeout_ms,
            check: false,
        }
    }

    fn failure_of(out: FromWorker) -> (Option<Failure>, String) {
        match out {
            FromWorker::Done { failure, error, .. } => (failure, error.unwrap_or_default()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timeout_is_the_interrupt_firing_not_a_word_in_the_error() {
        let (kind, error) = failure_of(run_job(&job("while (true) {}", 200)));
        assert_eq!(kind, Some(Failure::Timeout), "{error}");
        assert!(error.contains("200 ms"), "{error}");
        // Code that throws the engine's word is the code's failure.
        let thrown = "async function main() { throw new Error('interrupted'); }";
        let (kind, error) = failure_of(run_job(&job(thrown, 5_000)));
        assert_eq!(kind, Some(Failure::Code), "{error}");
        assert!(error.contains("interrupted"), "{error}");
    }
}
