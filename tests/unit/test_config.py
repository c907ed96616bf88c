"""Configuration: defaults, files and drop-ins, unknown keys, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdsm import config
from vdsm.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_follow_upstream():
    cfg = config.Config()
    assert cfg.vars.ssl is True
    assert cfg.addresses.management_ip == "::"
    assert cfg.addresses.management_port == 54321
    assert cfg.irs.repository == Path("/rhev/data-center")
    assert cfg.sanlock.io_timeout == 10
    assert cfg.paths.hooks_dir == Path("/usr/libexec/vdsm/hooks")
    assert cfg.vars.key_file == Path("/etc/pki/vdsm/keys/vdsmkey.pem")
    assert cfg.vars.ca_file == Path("/etc/pki/vdsm/certs/cacert.pem")


def test_file_then_dropins_in_name_order(tmp_path):
    main = write(tmp_path / "vdsm.conf", "[vars]\nssl = false\n[addresses]\nmanagement_port = 1\n")
    write(tmp_path / "vdsm.conf.d" / "50-b.conf", "[addresses]\nmanagement_port = 3\n")
    write(tmp_path / "vdsm.conf.d" / "10-a.conf", "[addresses]\nmanagement_port = 2\n")
    write(tmp_path / "vdsm.conf.d" / "ignored.txt", "[addresses]\nmanagement_port = 9\n")
    files = config.config_files(main)
    assert [f.name for f in files] == ["vdsm.conf", "10-a.conf", "50-b.conf"]
    cfg, warnings = config.load(files)
    assert cfg.vars.ssl is False
    assert cfg.addresses.management_port == 3
    assert warnings == []


def test_unknown_keys_and_sections_warn(tmp_path):
    f = write(tmp_path / "c.conf", "[vars]\nssl = true\nfake_spice = x\n[mom]\nconf = y\n")
    cfg, warnings = config.load([f])
    assert cfg.vars.ssl is True
    assert any("[vars] fake_spice" in w for w in warnings)
    assert any("[mom] conf" in w for w in warnings)


@pytest.mark.parametrize(
    "text, section, key",
    [
        ("[vars]\nssl = maybe\n", "vars", "ssl"),
        ("[addresses]\nmanagement_port = 70000\n", "addresses", "management_port"),
        ("[addresses]\nmanagement_port = http\n", "addresses", "management_port"),
        ("[logging]\nlevel = LOUD\n", "logging", "level"),
        ("[rpc]\nmax_frame_size = 10\n", "rpc", "max_frame_size"),
        ("[irs]\nrepository =\n", "irs", "repository"),
    ],
)
def test_bad_value_names_file_section_and_key(tmp_path, text, section, key):
    f = write(tmp_path / "bad.conf", text)
    with pytest.raises(ConfigError) as info:
        config.load([f])
    message = str(info.value)
    assert str(f) in message
    assert f"[{section}] {key}" in message


def test_not_an_ini_file(tmp_path):
    f = write(tmp_path / "broken.conf", "ssl = true\n")
    with pytest.raises(ConfigError, match="not an INI file"):
        config.load([f])


def test_log_level_aliases(tmp_path):
    f = write(tmp_path / "c.conf", "[logging]\nlevel = warn\n")
    cfg, _ = config.load([f])
    assert cfg.logging.level == "WARNING"


def test_developer_defaults_live_under_one_dir(tmp_path):
    cfg = config.developer_defaults(tmp_path / ".run")
    assert cfg.vars.ssl is False
    assert cfg.addresses.management_ip == "127.0.0.1"
    assert cfg.addresses.management_port == 54321
    for p in (cfg.irs.repository, cfg.paths.state_dir, cfg.paths.run_dir, cfg.paths.hooks_dir):
        assert p.is_relative_to(tmp_path / ".run")


def test_every_key_is_documented():
    rows = config.describe()
    assert rows
    assert all(doc for _, _, _, doc in rows)


def test_readme_documents_every_key():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [f"[{s}] {k}" for s, k, _, _ in config.describe() if f"`[{s}] {k}`" not in readme]
    assert missing == []
