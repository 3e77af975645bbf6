"""Usage lines in click's notation: ``IMAGE``, ``[IMAGE]``, ``IMAGES...``.

typer 0.29 writes required arguments in braces (``{IMAGE}``, ``{IMAGES...}...``), which reads as a literal
or a set to users who know POSIX usage lines. :func:`use_plain_usage` gives every erasekit command a command
class that renders its arguments as click does; options keep typer's rendering.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand


def argument_usage(argument: TyperArgument) -> str:
    """``NAME`` (the metavar when one is set, else the upper-cased name), ``NAME...`` when it takes several
    values, ``[...]`` when it is optional."""
    name = argument.metavar or (argument.name or "").upper()
    if argument.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if argument.required else f"[{name}]"


class PlainUsageCommand(TyperCommand):
    """A typer command whose usage line writes arguments without braces (see the module docstring)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def use_plain_usage(app: typer.Typer) -> None:
    """Give every command of ``app`` and of its sub-apps that has typer's default command class
    :class:`PlainUsageCommand`; call it after every command is registered."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = PlainUsageCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_plain_usage(group.typer_instance)
