"""``python -m syncstore``: the ``syncstore`` command line."""

from syncstore.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="syncstore")
