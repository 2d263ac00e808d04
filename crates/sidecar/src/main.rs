//! `onem2m-sa`: the sidecar proxy that secures any oneM2M CSE with Security Associations
//! (TS-0003 clause 7.3), its key and ticket tools, SA administration, and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onem2m_sa_sidecar::config::Config;
use onem2m_sa_sidecar::keys::{KeygenArgs, TicketCommand, run_keygen, run_ticket};
use onem2m_sa_sidecar::{admin_client, demo, logging, proxy};

/// mimalloc instead of glibc's malloc: the data path allocates and frees many small buffers per
/// request across the runtime's threads, and glibc's `malloc`/`free` (with its chunk
/// consolidation) was about 18 % of the sidecar pair's CPU time under load (issue 16,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "onem2m-sa",
    version,
    about = "Secure any oneM2M CSE with Security Associations (TS-0003 clause 7.3)",
    long_about = "Secure any oneM2M CSE with Security Associations (TS-0003 clause 7.3).\n\n\
        Put `onem2m-sa sidecar` in front of a CSE and beside each AE: requests are sealed and\n\
        authenticated between the two sidecars, plaintext stays on loopback.\n\n\
        First time? Run `onem2m-sa demo` to see it work on loopback with nothing to set up.",
    after_help = "Getting started:\n  \
        onem2m-sa demo                                   see it work, nothing to set up\n  \
        onem2m-sa keygen --out anchor                    a trust anchor key pair\n  \
        onem2m-sa keygen --out id-in                     a node's key pair\n  \
        onem2m-sa ticket issue --anchor-key anchor.key.pem --anchor-id /trust-anchor \\\n      \
        --subject /id-in --subject-key id-in.pub.pem --out id-in.ticket.json\n  \
        onem2m-sa sidecar --config sidecar.toml          run it (see examples/sidecar-cse.toml)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar proxy described by a TOML config file.
    Sidecar {
        /// The config file (see examples/sidecar-cse.toml and examples/sidecar-ae.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Validate the config (files, keys, tickets; peers that do not resolve) and exit.
        #[arg(long)]
        check: bool,
        /// With --check: also check that the upstream answers like oneM2M, that each peer's
        /// ingress is reachable and is a sidecar, and that an SA can be established with it.
        #[arg(long, requires = "check")]
        connect: bool,
    },
    /// Generate a signing key pair (a node's or a trust anchor's).
    Keygen(KeygenArgs),
    /// Issue or inspect tickets (a trust anchor's statement of a node's key and what it may do).
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// List or remove the SAs of a running sidecar (through its admin endpoint).
    #[command(subcommand)]
    Sa(SaCommand),
    /// Run everything on loopback: a demo CSE, two sidecars, an AE, a CRUD workload.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum SaCommand {
    /// List the SAs (identifier, peer, direction, suite, expiry).
    List {
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: SocketAddr,
        /// Print the JSON the admin endpoint returns.
        #[arg(long)]
        json: bool,
    },
    /// Remove an SA (an outbound SA's Responder is told; the next request establishes a new one).
    Remove {
        /// The SA identifier (16 hex digits, as `sa list` prints it).
        id: String,
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Keygen(args) => run_keygen(&args).map(|()| true),
        Command::Ticket(cmd) => run_ticket(&cmd).map(|()| true),
        Command::Sidecar { config, check, connect } => sidecar(config, check, connect),
        Command::Sa(cmd) => runtime().and_then(|rt| rt.block_on(sa(cmd))),
        Command::Demo(args) => {
            logging::init_for_tools();
            runtime().and_then(|rt| rt.block_on(demo::run(&args)))
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = Result<bool, Box<dyn std::error::Error>>;

fn runtime() -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn sidecar(path: PathBuf, check: bool, connect: bool) -> Outcome {
    let config = Config::load(&path)?;
    if check {
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        for warning in onem2m_sa_sidecar::config::unresolved_peers(&config) {
            eprintln!("warning: {warning}");
        }
        println!("{}: ok (node {})", path.display(), config.node.id);
        if !connect {
            return Ok(true);
        }
        logging::init_for_tools();
        let findings = runtime()?.block_on(onem2m_sa_sidecar::doctor::connect_checks(&config));
        for finding in &findings {
            println!("{finding}");
        }
        return Ok(findings.iter().all(|f| f.ok));
    }
    logging::init(&config.log)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let metrics = config.admin.as_ref().map(|_| onem2m_sa_sidecar::admin::install_prometheus());
    runtime()?.block_on(async move {
        let listeners = proxy::Listeners::bind(&config).await?;
        // Listen for SIGHUP before anything is started, so that none ends the process.
        #[cfg(unix)]
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let running = proxy::Sidecar::start(&config, listeners, metrics).await?;
        #[cfg(unix)]
        until_shutdown_reloading_on_hangup(running.runtime(), hangup).await;
        #[cfg(not(unix))]
        shutdown_signal().await;
        tracing::info!("shutting down: draining requests in flight");
        running.shutdown().await;
        Ok(true)
    })
}

/// Waits for Ctrl-C or SIGTERM; on each SIGHUP meanwhile, reloads the config file (a bad one is
/// refused with its error and the running configuration stays).
#[cfg(unix)]
async fn until_shutdown_reloading_on_hangup(runtime: &proxy::Runtime, mut hangup: tokio::signal::unix::Signal) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = hangup.recv() => {
                let runtime = runtime.clone();
                match tokio::task::spawn_blocking(move || runtime.reload_from_file()).await {
                    Ok(Ok(done)) => tracing::info!(kept = done.sas_kept, removed = done.sas_removed, "{done} (SIGHUP)"),
                    Ok(Err(e)) => tracing::error!("reload refused: {e}"),
                    Err(e) => tracing::error!("reload failed: {e}"),
                }
            }
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn sa(cmd: SaCommand) -> Outcome {
    match cmd {
        SaCommand::List { admin, json } => {
            let (status, body) = admin_client::request(admin, "GET", "/sa").await?;
            if status != 200 {
                return Err(format!("admin endpoint answered {status}: {body}").into());
            }
            if json {
                println!("{body}");
            } else {
                print!("{}", admin_client::format_sa_list(&body)?);
            }
            Ok(true)
        }
        SaCommand::Remove { id, admin } => {
            let (status, body) = admin_client::request(admin, "DELETE", &format!("/sa/{id}")).await?;
            match status {
                200 => println!("removed SA {id}"),
                404 => println!("no SA {id} at {admin}"),
                _ => println!("admin endpoint answered {status}: {body}"),
            }
            Ok(status == 200)
        }
    }
}
