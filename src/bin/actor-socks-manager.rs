//! `actor-socks-manager`: the manager client, installed beside the proxy by
//! `cargo install --path .` (the code is `actor_socks::manager_client`).

fn main() -> std::process::ExitCode {
    actor_socks::manager_client::main()
}
