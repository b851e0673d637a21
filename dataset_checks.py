"""The settings checked against the image set they will run on (channel, time point, planes,
pixel type): what a run and ``check --input`` refuse before the model loads."""
from __future__ import annotations

import numpy as np

from .config import Config, ConfigError, _fail
from .pipeline.plan import output_dtype, resolve_plane_range


def check_against_dataset(config: Config, info) -> None:
    """Settings that depend on the image set: channel, time point, planes, pixel type."""
    where = f" in {info.source}" if info.source else ""
    if config.input_channel >= info.size_c:
        raise _fail("INPUT_CHANNEL", config.input_channel,
                    f"out of range: the image{where} has {info.size_c} channel(s) (valid: 0-{info.size_c - 1})")
    if config.current_time_point and info.active_time_point >= info.size_t:
        raise _fail("TIME_POINT", info.active_time_point,
                    f"out of range: the image{where} has {info.size_t} time point(s) (valid: 0-{info.size_t - 1})")
    first, last = resolve_plane_range(config.first_plane, config.last_plane, info.size_z)
    for name, value in (("FIRST_PLANE", config.first_plane), ("LAST_PLANE", config.last_plane)):
        if value >= info.size_z:
            raise _fail(name, value, f"beyond the stack: the image{where} has {info.size_z} Z plane(s) "
                        f"(valid: 0-{info.size_z - 1}, or -1)")
    if first > last:
        raise ConfigError(f"FIRST_PLANE (--first-plane) = {config.first_plane} is above LAST_PLANE "
                          f"(--last-plane) = {config.last_plane} (resolved: {first} > {last})")
    target = output_dtype(info.dtype, config.label_dtype, config.label_ids, source=info.source)
    if not np.can_cast(info.dtype, target, "safe"):
        raise _fail("LABEL_DTYPE", config.label_dtype,
                    f"cannot hold the input's {np.dtype(info.dtype).name} values unchanged; use 'auto'")
