fn main() -> std::process::ExitCode {
    proximity::cli::main()
}
