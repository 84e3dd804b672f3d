"""The ``toolbag`` command line: the composition root that starts every process (``toolbag.cli.app``)."""


def main() -> None:
    from toolbag.cli.app import main as run

    run()
