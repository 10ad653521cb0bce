//! `mnemo`: the server (`mnemo serve`), client commands against a running server,
//! and helpers. `mnemo --help` lists everything.

#[cfg(feature = "server")]
mod bench;
mod cmd;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod serve;

use clap::{Parser, Subcommand};
use cmd::{conn, forget, observe, recall, space, stats, synth};

#[derive(Parser)]
#[command(name = "mnemo", version, about = "Mnemo: a streaming memory server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded default: ./mnemo-data, 127.0.0.1:7400, metrics on :7401).
    #[cfg(feature = "server")]
    Serve(config::ServeFlags),
    /// Print the effective server configuration (file < MNEMO_* env < flags) as TOML.
    #[cfg(feature = "server")]
    Config(config::ServeFlags),
    /// Manage memory spaces on a running server.
    Space {
        #[command(flatten)]
        conn: conn::Conn,
        #[command(subcommand)]
        command: space::SpaceCommand,
    },
    /// Stream observations from a JSON-lines file into a space (resumes on reconnect).
    Observe(observe::ObserveArgs),
    /// Recall the memories nearest to a cue (filters: --tag, --session, --since …).
    Recall(recall::RecallArgs),
    /// Memories by id.
    Get(recall::GetArgs),
    /// Forget memories by --id, --session or a filter (--tag …).
    Forget(forget::ForgetArgs),
    /// Purge and compact a space now: forgotten memories leave every file.
    Compact(forget::CompactArgs),
    /// Server statistics.
    Stats {
        #[command(flatten)]
        conn: conn::Conn,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new random API key and print it with the config lines that grant it.
    #[cfg(feature = "server")]
    Key {
        /// The key's name in the config.
        #[arg(default_value = "my-key")]
        name: String,
    },
    /// Repair a damaged log offline (the server must be stopped): keep every valid
    /// record, report what was lost, keep the originals in log/quarantine/.
    #[cfg(feature = "server")]
    Repair {
        /// The server's data directory.
        data_dir: std::path::PathBuf,
    },
    /// Print synthetic clustered observations as JSON lines (for trying things out).
    Synth(synth::SynthArgs),
    /// Load generator and benchmark report (in-process server unless --addr is given).
    #[cfg(feature = "server")]
    Bench(Box<bench::BenchArgs>),
}

/// The runtimes a command runs on: a server's layout (`serve`, and `bench` with
/// its in-process server: the same function builds both), or one plain runtime.
enum Runtime {
    #[cfg(feature = "server")]
    Server(mnemo_server::Runtimes),
    Plain(tokio::runtime::Runtime),
}

impl Runtime {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            #[cfg(feature = "server")]
            Runtime::Server(r) => r.block_on(f),
            Runtime::Plain(r) => r.block_on(f),
        }
    }

    fn shutdown(self) {
        match self {
            #[cfg(feature = "server")]
            Runtime::Server(r) => r.shutdown(),
            Runtime::Plain(r) => drop(r),
        }
    }
}

/// Builds the runtimes `command` needs. A server's are started here, on the main
/// thread at normal priority, before anything is niced (see `mnemo_server::Runtimes`).
fn runtime(command: &Command) -> anyhow::Result<Runtime> {
    #[cfg(feature = "server")]
    {
        let layout = match command {
            Command::Serve(flags) => Some(mnemo_server::RuntimeLayout {
                session_nice: flags.resolve()?.session_nice,
                ..Default::default()
            }),
            Command::Bench(args) if args.embedded() => Some(Default::default()),
            _ => None,
        };
        if let Some(layout) = layout {
            let r = mnemo_server::Runtimes::start(layout)
                .map_err(|e| anyhow::anyhow!("starting the server's threads: {e}"))?;
            return Ok(Runtime::Server(r));
        }
    }
    #[cfg(not(feature = "server"))]
    let _ = command;
    let r = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(Runtime::Plain(r))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The load generator's in-process server would drown its report in info lines.
    #[cfg(feature = "server")]
    let quiet = matches!(cli.command, Command::Bench(_));
    #[cfg(not(feature = "server"))]
    let quiet = false;
    let default_level = if quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match runtime(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, &runtime));
    runtime.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, runtime: &Runtime) -> anyhow::Result<()> {
    #[cfg(feature = "server")]
    let server_options = || match runtime {
        Runtime::Server(r) => r.options(),
        Runtime::Plain(_) => mnemo_server::Options::default(),
    };
    #[cfg(not(feature = "server"))]
    let _ = runtime;
    match command {
        #[cfg(feature = "server")]
        Command::Serve(flags) => serve::run(flags.resolve()?, server_options()).await,
        #[cfg(feature = "server")]
        Command::Config(flags) => {
            print!("{}", toml::to_string_pretty(&flags.resolve_redacted()?)?);
            Ok(())
        }
        Command::Space { conn, command } => space::space(conn, command).await,
        Command::Observe(args) => observe::run(args).await,
        Command::Recall(args) => recall::recall(args).await,
        Command::Get(args) => recall::get(args).await,
        Command::Forget(args) => forget::forget(args).await,
        Command::Compact(args) => forget::compact(args).await,
        Command::Stats { conn, json } => stats::stats(conn, json).await,
        Command::Synth(args) => synth::synth(args),
        #[cfg(feature = "server")]
        Command::Repair { data_dir } => cmd::repair::run(&data_dir),
        #[cfg(feature = "server")]
        Command::Key { name } => {
            cmd::key::new_key(&name);
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Bench(args) => bench::run(*args, server_options()).await,
    }
}
