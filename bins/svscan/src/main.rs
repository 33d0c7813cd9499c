fn main() {
    eprintln!("svscan: fatal: not yet implemented");
    std::process::exit(100);
}
