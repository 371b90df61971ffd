"""The jobs users run crlab for, each one command: nightly, gate, repro, bisect."""
