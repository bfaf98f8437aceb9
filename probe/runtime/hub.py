"""Whether the Hugging Face Hub may be tried (the offline flags) and whether it answers."""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_endpoint() -> str:
    """The hub's base URL: HF_ENDPOINT (a mirror), else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)


def hub_offline(*, datasets: bool = False) -> bool:
    """True when HF_HUB_OFFLINE (and, for datasets, HF_DATASETS_OFFLINE) is set to a true value.

    Parsed as huggingface_hub parses it (1, true, yes, on; any case), so the toolkit and the
    HF libraries never disagree about whether the machine is offline.
    """
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",)
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in names
    )


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One quick TCP connect to the hub, so an offline machine fails in seconds, not after
    the HF clients' retries (minutes). Callers word the failure for their own fix.

    True behind a proxy (HTTPS_PROXY, ALL_PROXY), where a direct connection failing says
    nothing; the port follows the endpoint's scheme (443, or 80 for plain http).
    """
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        log.info("the hub at %s:%d is not reachable: %s", host, port, err)
        return False
    return True
