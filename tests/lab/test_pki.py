"""The throw-away PKI: a real TLS handshake with client certificates over loopback."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from tests.lab.pki import PKI


def _handshake(pki: PKI, client: ssl.SSLContext) -> str:
    """Serve one TLS connection with the vdsm certificate; returns the client's CN."""
    server_ctx = pki.server_context()
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        subject = dict(x[0] for x in tls.getpeercert()["subject"])
                        seen.append(subject["commonName"])
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError) as e:
                    seen.append(f"rejected: {e}")

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.recv(2)
        except (ssl.SSLError, OSError):
            pass
        thread.join(10)
    return seen[0]


def test_trust_store_layout(pki: PKI) -> None:
    assert (pki.trust_store / "keys" / "vdsmkey.pem").is_file()
    assert (pki.trust_store / "certs" / "vdsmcert.pem").is_file()
    assert (pki.trust_store / "certs" / "cacert.pem").is_file()
    assert pki.vdsm_config() == {"vars": {"ssl": "true", "trust_store_path": str(pki.trust_store)}}


def test_openssl_verifies_the_chains(pki: PKI) -> None:
    def verify(ca: object, cert: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca), str(cert)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert verify(pki.ca_cert, pki.server_cert).returncode == 0
    assert verify(pki.ca_cert, pki.client_cert).returncode == 0
    assert verify(pki.other_ca_cert, pki.rogue_client_cert).returncode == 0
    assert verify(pki.ca_cert, pki.rogue_client_cert).returncode != 0


def test_engine_certificate_is_accepted(pki: PKI) -> None:
    assert _handshake(pki, pki.client_context()) == "engine"


@pytest.mark.parametrize(
    "rogue, with_cert", [(True, True), (False, False)], ids=["other-ca", "no-certificate"]
)
def test_other_clients_are_rejected(pki: PKI, rogue: bool, with_cert: bool) -> None:
    assert _handshake(pki, pki.client_context(rogue=rogue, with_cert=with_cert)).startswith(
        "rejected"
    )
