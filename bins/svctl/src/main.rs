fn main() {
    eprintln!("svctl: fatal: not yet implemented");
    std::process::exit(100);
}
