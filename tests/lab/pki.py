"""A throw-away TLS PKI made with `openssl`, in vdsm's trust-store layout.

    root/trust/keys/vdsmkey.pem     server key          (the daemon's [vars] trust_store_path
    root/trust/certs/vdsmcert.pem   server certificate   is root/trust)
    root/trust/certs/cacert.pem     the CA that signs servers and engines
    root/client/{cert,key}.pem      an engine: a client certificate signed by that CA
    root/other/{cacert,cert,key}.pem  a rogue client, signed by ANOTHER CA

The server certificate names localhost, 127.0.0.1 and ::1.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / "cakey.pem", directory / "cacert.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        DAYS,
        "-subj",
        f"/O=vdsm tests/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return key, cert


def _leaf(
    directory: Path, stem: str, cn: str, ca_key: Path, ca_cert: Path, server: bool
) -> tuple[Path, Path]:
    key, csr, cert = (
        directory / f"{stem}key.pem",
        directory / f"{stem}.csr",
        directory / f"{stem}cert.pem",
    )
    ext = directory / f"{stem}.ext"
    if server:
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
        )
    else:
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n"
        )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/O=vdsm tests/CN={cn}",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        DAYS,
        "-extfile",
        str(ext),
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return key, cert


@dataclass(frozen=True)
class PKI:
    root: Path
    trust_store: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    rogue_client_cert: Path
    rogue_client_key: Path

    @classmethod
    def create(cls, root: Path) -> PKI:
        trust = root / "trust"
        for d in (trust / "keys", trust / "certs", root / "ca", root / "client", root / "other"):
            d.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _ca(root / "ca", "vdsm-test-ca")
        server_key, server_cert = _leaf(
            root / "ca", "server", "localhost", ca_key, ca_cert, server=True
        )
        client_key, client_cert = _leaf(
            root / "client", "", "engine", ca_key, ca_cert, server=False
        )
        other_key, other_cert = _ca(root / "other", "rogue-ca")
        rogue_key, rogue_cert = _leaf(
            root / "other", "", "rogue-engine", other_key, other_cert, server=False
        )
        (trust / "keys" / "vdsmkey.pem").write_bytes(server_key.read_bytes())
        (trust / "keys" / "vdsmkey.pem").chmod(0o600)
        (trust / "certs" / "vdsmcert.pem").write_bytes(server_cert.read_bytes())
        (trust / "certs" / "cacert.pem").write_bytes(ca_cert.read_bytes())
        return cls(
            root=root,
            trust_store=trust,
            ca_cert=trust / "certs" / "cacert.pem",
            ca_key=ca_key,
            server_cert=trust / "certs" / "vdsmcert.pem",
            server_key=trust / "keys" / "vdsmkey.pem",
            client_cert=client_cert,
            client_key=client_key,
            other_ca_cert=other_cert,
            rogue_client_cert=rogue_cert,
            rogue_client_key=rogue_key,
        )

    def client_context(self, rogue: bool = False, with_cert: bool = True) -> ssl.SSLContext:
        """What an engine uses: trusts the CA, presents the engine (or rogue) certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        if with_cert:
            if rogue:
                ctx.load_cert_chain(self.rogue_client_cert, self.rogue_client_key)
            else:
                ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """What vdsm should do: present its certificate, require a client one from the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_cert))
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def vdsm_config(self) -> dict[str, dict[str, str]]:
        """The [vars] a vdsmd needs to serve TLS with this PKI."""
        return {"vars": {"ssl": "true", "trust_store_path": str(self.trust_store)}}
