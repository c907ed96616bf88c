"""TLS on the management port: client certificates required, both protocols behind it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request

import pytest

from tests.support.rawstomp import RawStomp, ping

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(vdsmd, pki):
    return vdsmd(pki.vdsm_config())


def test_engine_certificate_is_served(daemon, pki):
    assert ping(daemon.host, daemon.port, ssl_context=pki.client_context())["result"] is True


def test_client_without_certificate_is_refused(daemon, pki):
    with (
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        RawStomp(daemon.host, daemon.port, ssl_context=pki.client_context(with_cert=False)) as c,
    ):
        c.connect()
    # Served to the next, proper client as if nothing happened.
    assert ping(daemon.host, daemon.port, ssl_context=pki.client_context())["result"] is True


def test_certificate_from_another_ca_is_refused(daemon, pki):
    context = pki.client_context(rogue=True)
    with (
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        RawStomp(daemon.host, daemon.port, ssl_context=context) as c,
    ):
        c.connect()


def test_plain_tcp_client_is_refused(daemon):
    with (
        pytest.raises((ConnectionError, OSError, TimeoutError, AssertionError)),
        RawStomp(daemon.host, daemon.port, timeout=3) as c,
    ):
        c.connect()


def test_http_over_tls(daemon, pki):
    context = pki.client_context()
    with urllib.request.urlopen(
        f"https://localhost:{daemon.port}/health", context=context, timeout=5
    ) as r:
        assert json.loads(r.read())["state"] == "ready"


def test_vdsm_client_over_tls(daemon, pki):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdsm.client.cli",
            "-a",
            daemon.host,
            "-p",
            str(daemon.port),
            "--trust-store",
            str(pki.trust_store),
            "Host",
            "echo",
            "message=secure",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "secure"


def test_tls_start_fails_clearly_without_files(vdsmd, tmp_path):
    from tests.lab.vdsmd import VdsmdError

    with pytest.raises(VdsmdError) as info:
        vdsmd({"vars": {"ssl": "true", "trust_store_path": str(tmp_path / "none")}})
    assert "cannot set up TLS" in str(info.value)
    assert "vdsmkey.pem" in str(info.value)


def test_many_tls_clients_in_turn(daemon, pki):
    context = pki.client_context()
    for _ in range(20):
        with RawStomp(daemon.host, daemon.port, ssl_context=context) as c:
            c.connect()
            assert c.call("Host.ping2")["result"] is True
