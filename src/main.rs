//! The `aimcsim` command line: parses arguments, calls the library, prints.

fn main() {
    println!("aimcsim");
}
