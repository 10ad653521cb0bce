//! `mnemo`: the server (`mnemo serve`), client commands against a running server,
//! and helpers. `mnemo --help` lists everything.

mod bench;
mod client;
mod config;
mod observe;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mnemo", version, about = "Mnemo: a streaming memory server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded default: ./mnemo-data, 127.0.0.1:7400, metrics on :7401).
    Serve(config::ServeFlags),
    /// Print the effective server configuration (file < MNEMO_* env < flags) as TOML.
    Config(config::ServeFlags),
    /// Manage memory spaces on a running server.
    Space {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::SpaceCommand,
    },
    /// Stream observations from a JSON-lines file into a space (resumes on reconnect).
    Observe(observe::ObserveArgs),
    /// Recall the memories nearest to a cue.
    Recall(client::RecallArgs),
    /// Server statistics.
    Stats {
        #[command(flatten)]
        conn: client::Conn,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new random API key and print it with the config lines that grant it.
    Key {
        /// The key's name in the config.
        #[arg(default_value = "my-key")]
        name: String,
    },
    /// Print synthetic clustered observations as JSON lines (for trying things out).
    Synth(client::SynthArgs),
    /// Load generator and benchmark report (in-process server unless --addr is given).
    Bench(Box<bench::BenchArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The load generator's in-process server would drown its report in info lines.
    let default_level = if matches!(cli.command, Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // `serve` reads its configuration before the runtimes start. Recalls rank on
    // threads of their own; sessions (ingestion) run on a runtime of their own whose
    // threads are niced; connections and requests stay at normal priority.
    let mut serving = None;
    if let Command::Serve(flags) = &cli.command {
        let started = flags.resolve().and_then(|cfg| {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            let pool = mnemo_server::RecallPool::start(cores.max(2))
                .map_err(|e| anyhow::anyhow!("starting the recall threads: {e}"))?;
            let sessions = session_runtime(cfg.session_nice)
                .map_err(|e| anyhow::anyhow!("starting the session runtime: {e}"))?;
            Ok((cfg, pool, sessions))
        });
        match started {
            Ok(started) => serving = Some(started),
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // The session runtime lives out here: a runtime cannot be dropped inside another.
    let (serving, session_runtime) = match serving {
        Some((cfg, pool, sessions)) => {
            (Some((cfg, pool, sessions.handle().clone())), Some(sessions))
        }
        None => (None, None),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) => match serving {
                Some((cfg, pool, sessions)) => serve::run(cfg, pool, sessions).await,
                None => Err(anyhow::anyhow!("serve: configuration not read")),
            },
            Command::Config(flags) => {
                print!("{}", toml::to_string_pretty(&flags.resolve_redacted()?)?);
                Ok(())
            }
            Command::Space { conn, command } => client::space(conn, command).await,
            Command::Observe(args) => observe::run(args).await,
            Command::Recall(args) => client::recall(args).await,
            Command::Stats { conn, json } => client::stats(conn, json).await,
            Command::Synth(args) => client::synth(args),
            Command::Key { name } => {
                client::new_key(&name);
                Ok(())
            }
            Command::Bench(args) => bench::run(*args).await,
        }
    });
    drop(runtime);
    if let Some(sessions) = session_runtime {
        // Sessions have ended with the server; do not wait on a stuck one.
        sessions.shutdown_timeout(std::time::Duration::from_secs(5));
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The runtime that runs `serve`'s Observe and MemoryStream sessions, its threads
/// (and the blocking threads it starts) niced to `nice`.
fn session_runtime(nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("mnemo-session")
        .on_thread_start(move || {
            if let Err(error) = mnemo_engine::lower_thread_priority(nice) {
                tracing::warn!(nice, %error, "cannot lower the session threads' priority");
            }
        })
        .enable_all()
        .build()
}
