"""The Ray cluster a distributed run uses: a local one started for the run (the default), the
running local one ("auto"), or one at an address.

A cluster rlft starts is locked down as far as the installed Ray allows: token authentication
(``RAY_AUTH_MODE=token``, Ray >= 2.52) with a fresh random token held only in this process's
environment (and so in the processes Ray starts from it), never written to disk; no dashboard; and
``num_cpus`` as small as the run needs. Ray's own gRPC servers bind every interface in the Ray
versions checked (2.60 has no option to bind loopback only), which is why the token matters; the
learner's torch.distributed rendezvous listens on 127.0.0.1 (rlft.distributed.learners).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys

from rlft.config import ConfigError, DistributedConfig


def require_ray():
    """The ray module, or an error that says how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "[distributed] needs Ray, which is not installed; fix: pip install 'rlft[ray]' "
            "(or remove [distributed] / set distributed.samplers=0 to run in one process)"
        ) from None
    return ray


def _token_auth_env() -> None:
    """Token authentication for a cluster this process starts: a random token in the environment
    (inherited by the processes Ray starts, never written to disk), the same for every cluster
    this process starts (Ray caches the token it loaded). ``RAY_AUTH_MODE`` is read when ray is
    imported, so it is set only before that; Ray >= 2.59 turns token mode on for a new local
    cluster by itself and then takes this token instead of writing one to ~/.ray/auth_token.
    Settings the user made in the environment win."""
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def token_auth_supported(ray) -> bool:
    """Whether this Ray has token authentication (added in Ray 2.52)."""
    major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    return (major, minor) >= (2, 52)


@contextlib.contextmanager
def cluster(cfg: DistributedConfig, num_cpus: int):
    """Within ``with``: ray is initialised. A local cluster started here gets ``num_cpus`` logical
    CPUs and token authentication, and is shut down on exit; one we only connect to is left up."""
    if not cfg.ray_address:
        _token_auth_env()
    ray = require_ray()
    if ray.is_initialized():  # a caller (a test, a notebook) already connected: use that
        yield ray
        return
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, log_to_driver=True)
    else:
        if not token_auth_supported(ray):
            print(f"rlft: Ray {ray.__version__} has no token authentication (Ray >= 2.52 has); the local "
                  "cluster is open to anyone who can reach this machine's ports", file=sys.stderr)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 dashboard_host="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()
