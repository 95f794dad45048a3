use clap::Parser;

fn main() {
    let _cli = actor_socks::config::Cli::parse();
}
