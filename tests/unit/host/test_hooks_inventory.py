import hashlib
import os

from vdsm.hooks.inventory import installed_hooks, runnable_scripts


def script(path, text, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_inventory(tmp_path):
    hooks = tmp_path / "hooks"
    script(hooks / "before_vm_start" / "50_a", "#!/bin/sh\necho a\n")
    script(hooks / "before_vm_start" / "10_b", "#!/bin/sh\necho b\n")
    script(hooks / "before_vm_start" / "README", "not executable", mode=0o644)
    (hooks / "before_vm_start" / "subdir").mkdir()
    script(hooks / "after_vm_destroy" / "hook.py", "print()\n")
    (hooks / "empty_point").mkdir()
    script(hooks / "only_docs" / "notes", "x", mode=0o600)
    os.symlink(hooks / "before_vm_start" / "50_a", hooks / "after_vm_destroy" / "link")
    os.symlink(tmp_path / "nowhere", hooks / "after_vm_destroy" / "dangling")
    (hooks / "stray_file").write_text("a file at the top level")

    assert installed_hooks(hooks) == {
        "before_vm_start": {
            "10_b": {"checksum": sha("#!/bin/sh\necho b\n")},
            "50_a": {"checksum": sha("#!/bin/sh\necho a\n")},
        },
        "after_vm_destroy": {
            "hook.py": {"checksum": sha("print()\n")},
            "link": {"checksum": sha("#!/bin/sh\necho a\n")},
        },
    }


def test_run_order_is_lexicographic(tmp_path):
    point = tmp_path / "p"
    for name in ("50_x", "10_y", "9_z"):
        script(point / name, "#!/bin/sh\n")
    assert [p.name for p in runnable_scripts(point)] == ["10_y", "50_x", "9_z"]


def test_chmod_changes_what_counts(tmp_path):
    hooks = tmp_path / "hooks"
    hook = script(hooks / "before_vm_start" / "h", "#!/bin/sh\n", mode=0o644)
    assert installed_hooks(hooks) == {}
    hook.chmod(0o700)
    assert list(installed_hooks(hooks)["before_vm_start"]) == ["h"]


def test_missing_dir(tmp_path):
    assert installed_hooks(tmp_path / "none") == {}
