"""`adinspect backbones` (wired into `adinspect` by `add_commands`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `backbones`."""
    p = sub.add_parser("backbones", help="list registered backbones")
    p.set_defaults(func=cmd_backbones)


def cmd_backbones(args: argparse.Namespace) -> int:
    from adinspect.features.backbones import backbone_spec, list_backbones

    for name in list_backbones():
        spec = backbone_spec(name)
        print(f"{name:<20} channels {spec.channels} strides {spec.strides}  {spec.licence}")
    return 0
