//! The JavaScript worker: a process that runs executors in QuickJS, one at a time, each in a
//! fresh runtime with a memory limit and an interrupt deadline.
//!
//! The engine alone cannot bound wall-clock time (its interrupt handler is polled only every
//! ~10,000 operations and a loop of expensive built-ins outruns it), out-of-memory is catchable
//! in JavaScript, and some out-of-memory states abort the process. So the hub talks to this
//! worker over stdin/stdout and kills it at the deadline or after an out-of-memory; this crate
//! holds only the in-process half and stays out of other crates' rebuilds.
//!
//! Protocol, one JSON object per line. Hub → worker: `{"source", "input", "memory_mb",
//! "timeout_ms"}` to start a run (`{"source", "check": true}` only compiles the source: a
//! syntax error is the answer's `error`), then answers to SDK requests (`{"ok", "value" | "error"}`).
//! Worker → hub: `{"type": "sdk", "req": {...}}` for each SDK call, and at the end
//! `{"type": "done", "output", "error", "oom"}`.

use rquickjs::{CatchResultExt, Context, Function, Runtime};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
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
        let job: Value = match serde_json::from_str(&line) {
            Ok(j) => j,
            Err(e) => {
                send(
                    &json!({"type": "done", "output": null, "error": format!("bad job: {e}"), "oom": false}),
                );
                continue;
            }
        };
        let done = run_job(&job);
        send(&done);
    }
}

fn send(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// One SDK round trip: ask the hub on stdout, read its answer from stdin.
fn sdk_round_trip(req: String) -> String {
    let req: Value = serde_json::from_str(&req).unwrap_or(Value::Null);
    send(&json!({"type": "sdk", "req": req}));
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => line,
        _ => json!({"ok": false, "error": "the hub closed the SDK channel"}).to_string(),
    }
}

fn done(output: Option<Value>, error: Option<String>) -> Value {
    let oom = error
        .as_deref()
        .is_some_and(|e| e.contains("out of memory"));
    json!({"type": "done", "output": output, "error": error, "oom": oom})
}

/// A fresh engine: `memory` bytes of heap, a 512 KiB stack, interrupted `timeout` from now.
fn engine(memory: usize, timeout: Duration) -> Result<(Runtime, Context), String> {
    let rt = Runtime::new().map_err(|e| format!("cannot create a JavaScript runtime: {e}"))?;
    rt.set_memory_limit(memory);
    rt.set_max_stack_size(512 * 1024);
    let deadline = Instant::now() + timeout;
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
    let ctx = Context::full(&rt).map_err(|e| format!("cannot create a JavaScript context: {e}"))?;
    Ok((rt, ctx))
}

/// Compiles `source` as a global script without running any of it. The engine's compile-only
/// flag is not in rquickjs's safe API, so this one call is made on the engine directly.
#[allow(unsafe_code)]
fn check_job(source: &str) -> Value {
    let (_rt, ctx) = match engine(64 * 1024 * 1024, Duration::from_secs(5)) {
        Ok(e) => e,
        Err(e) => return done(None, Some(e)),
    };
    let Ok(text) = std::ffi::CString::new(source) else {
        return done(None, Some("the code holds a NUL character".into()));
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
        Ok(()) => done(Some(Value::Null), None),
        Err(e) => done(None, Some(e)),
    }
}

fn run_job(job: &Value) -> Value {
    if job["check"] == json!(true) {
        return check_job(job["source"].as_str().unwrap_or(""));
    }
    let source = job["source"].as_str().unwrap_or("").to_string();
    let input = job["input"].to_string();
    let memory = job["memory_mb"].as_u64().unwrap_or(128) as usize * 1024 * 1024;
    let timeout = Duration::from_millis(job["timeout_ms"].as_u64().unwrap_or(10_000));
    let (rt, ctx) = match engine(memory, timeout) {
        Ok(e) => e,
        Err(e) => return done(None, Some(e)),
    };
    let started = ctx.with(|ctx| -> Result<(), String> {
        let globals = ctx.globals();
        let sdk = Function::new(ctx.clone(), sdk_round_trip).map_err(|e| e.to_string())?;
        globals.set("__sdk", sdk).map_err(|e| e.to_string())?;
        globals.set("__input", input).map_err(|e| e.to_string())?;
        ctx.eval::<(), _>(PRELUDE).catch(&ctx).map_err(|e| format!("SDK prelude failed: {}", describe(e)))?;
        ctx.eval::<(), _>(source).catch(&ctx).map_err(describe)?;
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
        .map_err(describe)
    });
    if let Err(e) = started {
        return done(None, Some(interpret(e, timeout)));
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
                return done(None, Some(interpret(msg, timeout)));
            }
        }
    }
    // The state's fields are read one by one: the output is checked against the cap while it
    // is still the engine's string, so a huge output is never copied out (nor wrapped in another
    // JSON document, which needs as much again).
    let state = ctx.with(|ctx| -> Result<RunState, String> {
        let state: rquickjs::Object = ctx
            .globals()
            .get("__state")
            .map_err(|e| format!("the run's state is gone: {e}"))?;
        let done: bool = state.get("done").unwrap_or(false);
        let error: Option<String> = state.get("error").ok().flatten();
        let output: Option<rquickjs::String> = state.get("output").ok().flatten();
        let output = match output {
            None => None,
            Some(text) => {
                let len: usize = ctx
                    .eval::<usize, _>("__state.output.length")
                    .map_err(|e| e.to_string())?;
                // UTF-16 units: each is at least one byte of JSON.
                if len > OUTPUT_CAP {
                    return Err(format!(
                        "output too large: the output is at least {len} bytes as JSON, more than {} MiB",
                        OUTPUT_CAP >> 20
                    ));
                }
                Some(text.to_string().map_err(|e| e.to_string())?)
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
        Err(e) => return done(None, Some(interpret(e, timeout))),
    };
    if !state.done {
        return done(
            None,
            Some("main(input, sdk) never finished: its promise was left pending".into()),
        );
    }
    if let Some(err) = state.error {
        return done(None, Some(interpret(err, timeout)));
    }
    match state.output.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(output)) => {
            let bytes = output.to_string().len();
            if bytes > OUTPUT_CAP {
                return done(
                    None,
                    Some(format!(
                        "output too large: the output is {bytes} bytes as JSON, more than {} MiB",
                        OUTPUT_CAP >> 20
                    )),
                );
            }
            done(Some(output), None)
        }
        Some(Err(e)) => done(None, Some(format!("the output is not JSON: {e}"))),
        None => done(
            None,
            Some(
                "the output cannot be turned into JSON: main returned a function or a symbol"
                    .into(),
            ),
        ),
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

/// Names the engine's own errors in words a user understands.
fn interpret(msg: String, timeout: Duration) -> String {
    if msg.contains("interrupted") {
        format!(
            "timeout: the code ran longer than {} ms and was stopped",
            timeout.as_millis()
        )
    } else if msg.contains("out of memory") {
        format!("memory limit: {msg}")
    } else if msg.contains("stack overflow") {
        format!("stack overflow (recursion too deep): {msg}")
    } else {
        msg
    }
}
