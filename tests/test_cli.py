"""The `medloop` command imports only the domain of the command it runs (start-up time), and all of
them for the top-level help."""

from __future__ import annotations

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


def loaded_domains(*args: str) -> tuple[list[str], str]:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    *output, loaded = run.stdout.strip().splitlines()
    return loaded.split(), "\n".join(output)


def test_a_command_imports_only_its_domain() -> None:
    loaded, output = loaded_domains("sim", "--help")
    assert loaded == ["sim"] and "region" in output
    loaded, output = loaded_domains("--help")
    assert len(loaded) == 7 and "fhir" in output and "sim" in output
