//! `switchyard`: the command line. `serve` runs the hub; `send`, `tail`, `replay`, `listen` and
//! `executors` talk to a running one; `bench` measures it; `verify` checks a received webhook.

use clap::{Parser, Subcommand};
use switchyard::config::{LogFormat, ServeArgs, Settings};
use switchyard::{Application, app, bench};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Event and webhook integration hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (API, delivery engine) until SIGINT or SIGTERM.
    #[command(after_help = "Example:\n  switchyard serve\n  \
        SWITCHYARD_ADMIN_KEY=sy_admin_demo switchyard serve --allow-destination 127.0.0.0/8\n  \
        switchyard serve --config /etc/switchyard.toml --data-dir /var/lib/switchyard")]
    Serve(ServeArgs),
    /// Replace the instance admin key of a data dir by a new one and print it (offline
    /// recovery when the key is lost; restart a running hub afterwards).
    #[command(after_help = "Example:\n  switchyard reset-admin-key --data-dir /var/lib/switchyard")]
    ResetAdminKey(ServeArgs),
    /// Measure publish and delivery throughput and latency against a local receiver.
    #[command(
        after_help = "Example:\n  switchyard bench --events 20000 --concurrency 32\n  \
        switchyard bench --batch 50 --payload-bytes 4000 --json\n  \
        switchyard bench --ordered-keys 20 --backlog 200000\n  \
        switchyard bench --events 200000 --concurrency 8 --batch 100 --drain"
    )]
    Bench(bench::BenchArgs),
    /// Measure trivial executor runs per language (JavaScript, Node.js, Python, PHP).
    #[command(
        after_help = "Example:\n  switchyard bench-exec --runs 200 --languages javascript,python --hooks"
    )]
    BenchExec(bench::ExecBenchArgs),
    /// Measure scheduler accuracy: many schedules firing every second, fire time to commit.
    #[command(
        after_help = "Example:\n  switchyard bench-schedules --schedules 1000 --orgs 10 --seconds 30"
    )]
    BenchSchedules(bench::ScheduleBenchArgs),
    /// Publish an event to a running hub.
    Send(switchyard::cli::SendArgs),
    /// Print events as they arrive at a running hub.
    Tail(switchyard::cli::TailArgs),
    /// Send an endpoint's events of a time range again, showing the progress.
    Replay(switchyard::cli::ReplayArgs),
    /// Receive the organization's events on this machine: a temporary endpoint, each delivery
    /// printed (signature checked) and forwarded if asked; removed on exit.
    Listen(switchyard::cli::listen::ListenArgs),
    /// Keep executors as files: `pull` a folder from a running hub, `push` it back, `test` it
    /// against fixtures on a local hub.
    #[command(after_help = "Example:\n  switchyard executors pull ./executors\n  \
        switchyard executors test ./executors && switchyard executors push ./executors")]
    Executors(switchyard::cli::executors::ExecutorsArgs),
    /// Check a received webhook request (headers and body) against an endpoint's `whsec_`
    /// secret or `whpk_` public key; exits 0 when valid, 1 when not, saying why.
    #[command(
        after_help = "Example:\n  switchyard verify --key whsec_… --body body.json \\\n    \
        -H 'webhook-id: msg_1' -H 'webhook-timestamp: 1700000000' -H 'webhook-signature: v1,…'"
    )]
    Verify(switchyard::verify::VerifyArgs),
    /// Internal: run JavaScript executors for a hub (started by the hub itself).
    #[command(hide = true)]
    JsWorker,
    /// Internal: confine this process (Landlock, seccomp), then run a program (used by the hub).
    #[command(hide = true)]
    SandboxExec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Internal: inside an installer's sandbox, hand its proxy connections to the hub.
    #[command(hide = true)]
    SandboxForward,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Ends a command that talks to a hub with the exit code its outcome stands for.
fn cli_exit(outcome: Result<(), switchyard::cli::Failure>) -> anyhow::Result<()> {
    if let Err(f) = outcome {
        eprintln!("error: {}", f.message());
        std::process::exit(f.exit_code());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::JsWorker = cli.command {
        std::process::exit(switchyard_js::worker_main());
    }
    if let Command::SandboxExec { args } = &cli.command {
        std::process::exit(switchyard_exec::sandbox_exec::sandbox_exec_main(args));
    }
    if let Command::SandboxForward = cli.command {
        std::process::exit(switchyard_exec::index_proxy::sandbox_forward_main());
    }
    if let Command::Verify(args) = &cli.command {
        match switchyard::verify::run(args)? {
            Ok(()) => {
                println!("valid");
                return Ok(());
            }
            Err(why) => {
                println!("invalid: {why}");
                std::process::exit(1);
            }
        }
    }
    switchyard_egress::install_crypto_provider();
    switchyard::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::resolve(args)?;
            init_logging(settings.log_format);
            switchyard::memory::start_trimming();
            switchyard::listener::raise_file_limit();
            runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run(app::shutdown_signal()).await
            })
        }
        Command::ResetAdminKey(args) => {
            let settings = Settings::resolve(args)?;
            init_logging(LogFormat::Text);
            let key = runtime.block_on(app::reset_admin_key(&settings))?;
            println!(
                "The new instance admin key (shown once; every earlier admin key is revoked):\n{key}"
            );
            Ok(())
        }
        Command::Bench(args) => {
            init_logging(LogFormat::Text);
            runtime.block_on(bench::run(args))
        }
        Command::BenchExec(args) => {
            init_logging(LogFormat::Text);
            runtime.block_on(bench::run_exec(args))
        }
        Command::BenchSchedules(args) => {
            init_logging(LogFormat::Text);
            runtime.block_on(bench::run_schedules(args))
        }
        Command::Send(args) => cli_exit(runtime.block_on(switchyard::cli::send(args))),
        Command::Tail(args) => cli_exit(runtime.block_on(switchyard::cli::tail(args))),
        Command::Replay(args) => cli_exit(runtime.block_on(switchyard::cli::replay(args))),
        Command::Listen(args) => cli_exit(runtime.block_on(switchyard::cli::listen::listen(args))),
        Command::Executors(args) => {
            cli_exit(runtime.block_on(switchyard::cli::executors::run(args)))
        }
        Command::JsWorker
        | Command::SandboxExec { .. }
        | Command::SandboxForward
        | Command::Verify(_) => Ok(()),
    }
}
