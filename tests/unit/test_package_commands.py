"""The install command lines and the reason a failed install shows (pure; the commands run in
real containers in tests/integration/test_packages.py)."""

from __future__ import annotations

import json
import subprocess

from benchhub.package_commands import (
    MARKER_PATH,
    ROOT,
    WORKSPACE_USER,
    failure_reason,
    install_commands,
    meaningful_lines,
    write_marker_command,
)
from benchhub.package_spec import NO_PACKAGES, PackageSpec, parse_marker

PIP = "/opt/venv/bin/pip"

PIP_NOT_FOUND = """\
Defaulting to user installation because normal site-packages is not writeable
ERROR: Could not find a version that satisfies the requirement nosuchpkg-bench (from versions: none)
ERROR: No matching distribution found for nosuchpkg-bench
"""
APT_NOT_FOUND = """\
Reading package lists...
Building dependency tree...
Reading state information...
E: Unable to locate package nosuchpkg-bench
"""
R_NOT_AVAILABLE = """\
Installing package into '/home/jovyan/R/x86_64-pc-linux-gnu-library/4.2'
Warning message:
package 'nosuchpkg' is not available for this version of R

A version of this package for your version of R might be available elsewhere,
Error: not installed: nosuchpkg
Execution halted
"""


def test_nothing_missing_runs_nothing():
    assert install_commands(NO_PACKAGES, PIP) == []


def test_apt_runs_as_root_update_then_install_then_cleans_up():
    update, install = install_commands(PackageSpec(apt=("jq", "curl=7.88.1-10")), PIP)
    assert update.argv == ("/usr/bin/apt-get", "update") and update.user == ROOT
    assert install.user == ROOT
    # as root, programs come from the system's directories only, never the user's venv
    assert install.environment == {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    assert update.environment == install.environment
    shell, flag, script, name0, *names = install.argv
    assert (shell, flag, name0, names) == ("/bin/sh", "-c", "sh", ["jq", "curl=7.88.1-10"])
    assert 'install -y --no-install-recommends "$@"' in script  # names only as arguments
    assert "rm -rf /var/lib/apt/lists/*" in script
    assert install.doing == "Installing 2 apt packages (jq, curl=7.88.1-10)"


def test_pip_runs_as_the_workspace_user_with_the_venv_pip_and_names_after_double_dash():
    [pip] = install_commands(PackageSpec(pip=("six", "tabulate>=0.9")), PIP)
    assert pip.user == WORKSPACE_USER == "1000"
    assert pip.argv[:2] == (PIP, "install")
    assert "--no-input" in pip.argv and "--no-cache-dir" in pip.argv
    assert pip.argv[-3:] == ("--", "six", "tabulate>=0.9")
    assert pip.doing == "Installing 2 pip packages (six, tabulate>=0.9)"


def test_r_runs_rscript_as_the_user_with_names_as_arguments_not_code():
    [r] = install_commands(PackageSpec(r=("data.table", "R6")), PIP)
    assert r.user == WORKSPACE_USER
    assert r.argv[0:2] == ("Rscript", "-e") and r.argv[3:] == ("data.table", "R6")
    assert "data.table" not in r.argv[2]  # the R code is constant
    assert "R_LIBS_USER" in r.argv[2] and "stop(" in r.argv[2]


def test_installers_run_apt_first_then_pip_then_r():
    commands = install_commands(PackageSpec(pip=("six",), apt=("jq",), r=("R6",)), PIP)
    assert [c.installer for c in commands] == ["apt", "apt", "pip", "r"]


def test_a_long_list_is_summarised_in_the_progress_message():
    [pip] = install_commands(PackageSpec(pip=tuple(f"p{i}" for i in range(12))), PIP)
    assert pip.doing == "Installing 12 pip packages (p0, p1, p2, p3, p4 and 7 more)"
    [one] = install_commands(PackageSpec(pip=("six",)), PIP)
    assert one.doing == "Installing 1 pip package (six)"


def test_the_marker_script_writes_the_marker_atomically(tmp_path):
    installed = PackageSpec(pip=("six",), apt=("jq",))
    argv = list(write_marker_command(installed))
    assert argv[3] == MARKER_PATH
    target = tmp_path / "var" / "lib" / "benchhub" / "packages.json"
    argv[3] = str(target)  # the same script, run here against a temporary path
    subprocess.run(argv, check=True, timeout=10)
    assert parse_marker(target.read_text()) == installed
    assert json.loads(target.read_text())["version"] == 1
    assert [p.name for p in target.parent.iterdir()] == ["packages.json"]


def test_a_missing_pip_package_shows_pips_own_error_lines():
    [pip] = install_commands(PackageSpec(pip=("nosuchpkg-bench",)), PIP)
    reason = failure_reason(pip, 1, PIP_NOT_FOUND, "benchhub/jupyterlab:latest")
    assert reason == (
        "pip install failed (exit code 1): ERROR: Could not find a version that satisfies the "
        "requirement nosuchpkg-bench (from versions: none); ERROR: No matching distribution "
        "found for nosuchpkg-bench"
    )


def test_a_missing_apt_package_shows_apts_error_line():
    _, install = install_commands(PackageSpec(apt=("nosuchpkg-bench",)), PIP)
    reason = failure_reason(install, 100, APT_NOT_FOUND, "img")
    assert (
        reason
        == "apt-get install failed (exit code 100): E: Unable to locate package nosuchpkg-bench"
    )


def test_a_missing_r_package_shows_rs_warning_and_error():
    [r] = install_commands(PackageSpec(r=("nosuchpkg",)), PIP)
    reason = failure_reason(r, 1, R_NOT_AVAILABLE, "img")
    assert "package 'nosuchpkg' is not available for this version of R" in reason
    assert reason.endswith("Error: not installed: nosuchpkg")


def test_an_image_without_rscript_says_to_choose_a_template_with_r():
    [r] = install_commands(PackageSpec(r=("R6",)), PIP)
    oci = 'OCI runtime exec failed: exec: "Rscript": executable file not found in $PATH'
    reason = failure_reason(r, 126, oci, "benchhub/jupyterlab:latest")
    assert reason.startswith("R packages need a template with R: Rscript is not in the image ")
    assert "packages.r" in reason


def test_an_image_without_pip_names_the_tool_and_the_field():
    [pip] = install_commands(PackageSpec(pip=("six",)), "/opt/venv/bin/pip")
    oci = "exec failed: stat /opt/venv/bin/pip: no such file or directory"
    reason = failure_reason(pip, 127, oci, "other:1")
    assert "/opt/venv/bin/pip is not there" in reason and "packages.pip" in reason


def test_output_without_error_lines_shows_its_last_lines_bounded_and_without_escapes():
    noisy = "\n".join(f"line {i}" for i in range(1000)) + "\n\x1b[31mred\x1b[0m\x07 " + "z" * 5000
    lines = meaningful_lines("pip", noisy)
    assert lines[:2] == ["line 998", "line 999"]
    assert lines[2].startswith("red z") and len(lines[2]) == 200
    [pip] = install_commands(PackageSpec(pip=("six",)), PIP)
    assert len(failure_reason(pip, 2, noisy, "img")) < 500
    assert failure_reason(pip, 2, "", "img") == "pip install failed (exit code 2): no output"


def test_a_command_cut_short_says_so():
    [pip] = install_commands(PackageSpec(pip=("six",)), PIP)
    reason = failure_reason(pip, -1, "Collecting six\n[still printing when its time was up]", "i")
    assert (
        reason
        == "pip install failed (stopped): Collecting six; [still printing when its time was up]"
    )


def test_an_install_killed_by_the_memory_limit_says_so():
    [pip] = install_commands(PackageSpec(pip=("torch",)), PIP)
    reason = failure_reason(pip, 137, "Collecting torch\n", "img")
    assert reason.startswith("pip install was killed (exit code 137; out of memory is the usual")
