"""The command line: argument parsing and commands (commands), running a recipe through Hydra (launch), the
end-of-run summary and `predict`/`verify` over bundles."""

from framework.cli.commands import main as main
