"""The multi-worker settings of a run (`--strategy multi-worker`): where they come from
and their checks.

`resolve_processes` fills the settings left out from Keras's environment
variables (`PROCESS_ENV`) and checks them, before anything starts
(`training.distributed.initialize` starts the processes).
"""

import dataclasses
import os

from keras_googlenet._internal.values import is_int
from training.checks import first_failure, is_address, within
from training.fields import ConfigError

#: Keras's environment variables of `keras.distribution.initialize`, by field:
#: `--strategy multi-worker` reads them when the flags are not given.
PROCESS_ENV = {
    "job_addresses": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
}

MAX_PROCESSES = 4096  # far beyond any data-parallel GoogLeNet job


def resolve_processes(config):
    """Returns a copy whose multi-worker fields are filled in and checked.

    With `--strategy multi-worker`, fields left at `None` come from Keras's
    environment variables (`PROCESS_ENV`); other strategies take no
    multi-worker settings (the variables are then ignored). Pure: nothing
    is started (`training.distributed.initialize` starts the processes).

    Raises:
        ConfigError: If a multi-worker setting is missing or invalid.
    """
    config = dataclasses.replace(config)
    given = [f for f in PROCESS_ENV if getattr(config, f) is not None]
    if config.strategy != "multi-worker":
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --strategy multi-worker; "
                              f"got --strategy {config.strategy}")
        return config
    for field, variable in PROCESS_ENV.items():
        if getattr(config, field) is None and os.environ.get(variable, "") != "":
            value = os.environ[variable]
            if field != "job_addresses":
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"{variable} must be an integer; got {value!r}") from None
            setattr(config, field, value)
    for field, variable in PROCESS_ENV.items():
        if getattr(config, field) is None:
            raise ConfigError(f"--strategy multi-worker needs --{field.replace('_', '-')} "
                              f"(or ${variable}), the same on every process but the id")
    error = first_failure(process_checks(config))
    if error is not None:
        raise ConfigError(error)
    return config


def process_checks(config):
    """`resolve_processes`'s checks: (flag, value, valid, requirement)."""
    n = config.num_processes
    addresses = config.job_addresses.split(",") if isinstance(config.job_addresses, str) else []
    well_formed = bool(addresses) and all(is_address(a) for a in addresses)
    return [
        ("--num-processes", n, within(n, 1, MAX_PROCESSES), f"in [1, {MAX_PROCESSES}]"),
        ("--process-id", config.process_id, is_int(config.process_id) and is_int(n)
         and 0 <= config.process_id < n, f"in [0, --num-processes) = [0, {n})"),
        ("--job-addresses", config.job_addresses, well_formed and len(addresses) in (1, n),
         "HOST:PORT of process 0, or the comma-separated HOST:PORT of all --num-processes "
         "processes (process 0 first)"),
    ]
