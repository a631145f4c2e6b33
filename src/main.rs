//! The `mcp-edge` command line: run, check, demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_edge::config;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: glibc's malloc was 14% of the gateway's CPU under load (bench/RESULTS.md).
/// `--features system-alloc` keeps the system allocator, for heap profilers (massif, heaptrack).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mcp-edge", version, about = "An MCP gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, default_value = "conf/mcp-edge.yaml")]
        config: PathBuf,
        /// Take the listening sockets from the running gateway (`server.upgrade_sock`) instead of
        /// binding them; SIGUSR2 to the running gateway does this for you.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the configuration and its routes, print every error, and exit.
    Check {
        #[arg(long, default_value = "conf/mcp-edge.yaml")]
        config: PathBuf,
    },
    /// Print which routes and tools a caller would see and at which class (no token needed).
    Explain {
        #[arg(long, default_value = "conf/mcp-edge.yaml")]
        config: PathBuf,
        #[arg(long)]
        subject: String,
        /// Groups, comma- or space-separated.
        #[arg(long, default_value = "")]
        groups: String,
        /// Scopes, comma- or space-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run the gateway in front of two built-in sample upstreams on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the keyed chain of an audit trail (JSONL files in order, oldest first) and, with
    /// an anchor, that its tail was not cut; say where it breaks.
    Verify {
        /// File holding a chain key (`audit.chain_key`); repeat for the keys before a rotation.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// The anchor file (or the anchor exported from `mcp_edge_audit_anchor`).
        #[arg(long)]
        anchor: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, upgrade } => {
            let snapshot = config::load(&config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            mcp_edge::server::run(snapshot, Some(config), upgrade)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match config::load(&config) {
            Ok(snap) => {
                println!("{}: ok ({} routes)", config.display(), snap.routes.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprint!("{errors}");
                eprintln!("{} error(s)", errors.0.len());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Demo { listen } => demo(&listen),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    keys,
                    anchor,
                    files,
                },
        } => {
            let (ok, report) = mcp_edge::audit::verify::run(&files, &keys, anchor.as_deref())
                .map_err(|e| anyhow::anyhow!(e))?;
            print!("{report}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Explain {
            config,
            subject,
            groups,
            scopes,
            tenant,
        } => {
            let snap = config::load(&config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            let list = |s: &str| {
                s.split([',', ' '])
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            };
            let caller = mcp_edge::policy::Caller {
                subject,
                groups: list(&groups),
                scopes: list(&scopes),
                tenant,
                client_id: None,
            };
            let routes: Vec<_> = snap
                .routes
                .iter()
                .map(|r| (r.name.as_str(), r.prefix.as_str(), &r.policy))
                .collect();
            print!("{}", mcp_edge::policy::explain(&routes, &caller));
            Ok(ExitCode::SUCCESS)
        }
    }
}

const DEMO_GATEWAY: &str = include_str!("../conf/demo.yaml");

fn demo(listen: &str) -> anyhow::Result<ExitCode> {
    let addr = mcp_edge::server::resolve_listen(listen).context("demo listen address")?;
    // The sample upstreams run on their own runtime; Pingora runs the gateway on the main thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (alpha, beta) = runtime.block_on(async {
        anyhow::Ok((
            mcp_edge::demo::spawn_upstream("alpha").await?,
            mcp_edge::demo::spawn_upstream("beta").await?,
        ))
    })?;
    let route = |name: &str, url: &str| config::Source {
        file: PathBuf::from(format!("<demo>/routes/{name}.yaml")),
        text: format!("name: {name}\nowner: demo\nvisibility: [\"*\"]\nupstream:\n  url: {url}\n"),
    };
    let gateway = config::Source {
        file: PathBuf::from("<demo>/conf/demo.yaml"),
        text: DEMO_GATEWAY.replace("127.0.0.1:8080", &addr.to_string()),
    };
    let snapshot = config::compile(
        &gateway,
        &[route("alpha", &alpha.url), route("beta", &beta.url)],
    )
    .map_err(|e| anyhow::anyhow!("demo configuration:\n{e}"))?;
    println!("mcp-edge demo: two sample MCP servers behind one endpoint");
    println!("  upstream alpha: {}", alpha.url);
    println!("  upstream beta:  {}", beta.url);
    println!(
        "  MCP endpoint:   http://{addr}/mcp   (tools alpha__echo, beta__echo, alpha__progress, …)"
    );
    println!("  per server:     http://{addr}/servers/alpha/mcp");
    println!("Point an MCP client at it, e.g. the MCP Inspector:");
    println!(
        "  npx @modelcontextprotocol/inspector --cli http://{addr}/mcp --transport http --method tools/list"
    );
    println!("Authentication is off in the demo (auth.mode: none). Ctrl-C stops it.");
    mcp_edge::server::run(snapshot, None, false)?;
    drop((alpha, beta));
    Ok(ExitCode::SUCCESS)
}
