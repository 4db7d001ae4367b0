fn main() {
    std::process::exit(sprout::cli::main());
}
