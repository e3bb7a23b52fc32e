"""``python -m edge info``: what model is loaded, what it was trained on, and what runs it."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys

from edge import __version__
from edge.commands import options
from edge.model import ModelError


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show the model's contract, metrics, runtime and versions")
    options.add_model(p)
    p.add_argument("--profile", metavar="FILE", help="also show this voice profile; one made for another model is refused (exit 2)")
    p.add_argument("--json", action="store_true", help="print the information as one JSON object")
    p.set_defaults(func=main)


def main(args) -> int:
    import numpy as np

    from edge.model import Model
    from edge.profile import ProfileError
    from edge.runtime import runtime_version
    from edge.voice import NEVER, describe, load_profile

    try:
        model = Model(args.model)
        profile = load_profile(args.profile, model.contract) if args.profile else None
    except (ModelError, ProfileError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = model.contract
    info = {
        "model": str(model.path),
        "name": c.name,
        "sha256": c.sha256,
        "size_bytes": model.path.stat().st_size,
        "labels": list(c.labels),
        "window_s": c.window_s,
        "hop_s": c.hop_s,
        "input": {"shape": list(c.input.shape), "dtype": c.input.dtype, "scale": c.input.scale, "zero_point": c.input.zero_point},
        "output": {"shape": list(c.output.shape), "dtype": c.output.dtype, "scale": c.output.scale, "zero_point": c.output.zero_point},
        "frontend": c.frontend.to_dict(),
        "normalization": c.normalization.kind,
        "speech": dataclasses.asdict(c.speech),  # the gate the device runs unless [speech] overrides it
        "training_data": c.training_data,
        "metrics": c.metrics,
        "licence": c.licence,
        "runtime": model.runtime,
        "versions": {
            "ser-edge": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            model.runtime: runtime_version(model.runtime),
        },
    }
    if profile is not None:
        info["profile"] = {"path": args.profile, **describe(profile)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(
                    f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else NEVER if (key, k) == ('profile', 'updated') and v is None else v}"
                )
        else:
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0
