"""The `gpuplan` command line. Tables go to stdout, logs to stderr, `--json` for machines.

Every subcommand module keeps heavy imports (torch, pandas) inside its function bodies, so that
`gpuplan estimate` starts in well under half a second.
"""
from __future__ import annotations

import click

from gpuplan import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gpuplan")
def cli() -> None:
    """gpuplan: will this fine-tuning setup fit, how fast, and what is the cheapest way to run it?"""


def _register() -> None:
    from . import cli_estimate   # each command module once, at registration

    from . import cli_fit, cli_gpus, cli_recommend   # each command module once, at registration

    for command in (cli_estimate.estimate, cli_estimate.models, cli_gpus.gpus, cli_recommend.recommend, cli_fit.fit):
        cli.add_command(command)
    from . import cli_dashboard   # imports only click: streamlit is loaded by the started server

    cli.add_command(cli_dashboard.dashboard)
    from . import cli_watch   # the sampler imports no torch; the run it watches brings its own

    cli.add_command(cli_watch.watch)
    from . import cli_profile   # each command module once, at registration (it imports no torch)

    cli.add_command(cli_profile.profile)


_register()
