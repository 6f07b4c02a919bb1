"""The `nvs` command line: one module per subcommand, and the benchmarks."""
