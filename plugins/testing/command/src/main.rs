//! What a user gets from `cargo new` without `--lib`: a command, which
//! Tocsin must refuse with a message that says so.

fn main() {
    println!("hello from a command");
}
