"""The `medloop` command imports only the domain of the command it runs (start-up time); its
top-level help imports none and lists every command by the commands' own help lines."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
from medloop.cli import main
sys.argv = ["medloop", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
domains = ("sim", "fhir", "devices", "programs", "screening", "auth", "store")
print(" ".join(d for d in domains if f"medloop.{d}.cli" in sys.modules))
"""

EVERY_DOMAIN_HELP = """
from medloop.cli import _register, app
_register()  # every domain, imported
app(["--help"], prog_name="medloop")
"""


def run(code: str, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "160", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_domains(*args: str) -> tuple[list[str], str]:
    output, _, loaded = run(PROBE, *args).removesuffix("\n").rpartition("\n")  # the probe's line is last
    return loaded.split(), output


def test_a_command_imports_only_its_domain() -> None:
    loaded, output = loaded_domains("sim", "--help")
    assert loaded == ["sim"] and "region" in output
    loaded, output = loaded_domains("screen", "--help")
    assert loaded == ["screening"] and "--referrals" in output


def test_the_top_level_help_imports_no_domain_and_says_what_the_commands_say() -> None:
    loaded, output = loaded_domains("--help")
    assert loaded == []
    listed = {line.split()[1] for line in output.splitlines() if line.startswith("│ ")}
    assert {"serve", "demo", "score", "screen", "db", "users", "sim", "devices", "programs", "fhir"} <= listed
    assert output.strip() == run(EVERY_DOMAIN_HELP).strip()
