//! `overlayd`: the node agent of the overlay network (see
//! `overlay_examples::agent::daemon` for what it does, and `--help` for
//! its flags and their environment variables).

use std::process::ExitCode;

use clap::Parser;
use overlay_examples::agent::config::{Config, init_logging};
use overlay_examples::agent::daemon;

fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("overlayd: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(daemon::run(config, async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("overlayd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
