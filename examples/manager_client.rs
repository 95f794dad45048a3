//! The manager client as an example (`cargo run --example manager_client`):
//! the same code and flags as the installed `actor-socks-manager`
//! (`actor_socks::manager_client`).

fn main() -> std::process::ExitCode {
    actor_socks::manager_client::main()
}
