//! `jusinfer-sim`: the upstream simulator as a process, for end-to-end tests and benches.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Upstream simulator replaying recorded provider traffic")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Don't record requests (benchmarks).
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("jusinfer-sim listening on {}", listener.local_addr()?);
    let state = jusinfer_sim::SimState {
        quiet: args.quiet,
        ..Default::default()
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, jusinfer_sim::app(state)).await?;
    Ok(())
}
