"""The one hub check: the offline flags parse as huggingface_hub parses them, a proxy skips
the direct connect, the port follows the endpoint's scheme, and each caller words its error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from probe.errors import ProbeError
from probe.runtime import hub

_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY",
              "https_proxy", "ALL_PROXY", "all_proxy")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (host, port) the check connects to; each connection is refused."""
    seen: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    return seen


@pytest.mark.parametrize(
    "value, offline",
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("", False),
     ("false", False), ("no", False), ("off", False)],
)  # fmt: skip
def test_offline_flag_parses_like_huggingface_hub(
    value: str, offline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.hub_offline() is offline
    assert hub.hub_offline(datasets=True) is offline


def test_datasets_flag_counts_only_for_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert not hub.hub_offline()
    assert hub.hub_offline(datasets=True)


@pytest.mark.parametrize(
    "endpoint, address",
    [(None, ("huggingface.co", 443)), ("http://mirror.local", ("mirror.local", 80)),
     ("https://mirror.local:8443/hf", ("mirror.local", 8443))],
)  # fmt: skip
def test_port_follows_the_endpoint_scheme(
    endpoint: str | None,
    address: tuple[str, int],
    connections: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert not hub.hub_reachable(timeout=0.1)
    assert connections == [address]


def test_behind_a_proxy_no_direct_connection_is_tried(
    connections: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub.hub_reachable()
    assert connections == []


def test_unreachable_hub_fails_a_model_fast_with_the_aliases(
    connections: list[tuple[str, int]], tmp_path: Path
) -> None:
    from probe.models import resolve_model

    with pytest.raises(ProbeError, match=r"'xlmrr' is not cached and the hub is unreachable\. "
                                         r"Did you mean 'xlmr'\?"):  # fmt: skip
        resolve_model("xlmrr", tmp_path)
    assert connections == [("huggingface.co", 443)]
