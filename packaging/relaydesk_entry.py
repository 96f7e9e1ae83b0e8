"""The packaged app's entry script: the ``relaydesk`` command, GUI and CLI in one executable.

It lives outside the ``engine`` package on purpose: PyInstaller puts the entry script's
folder on the import path, where the engine's subpackages (``config``, ``store``, …) would
become importable a second time under top-level names, as different module objects.
"""

from desktop.cli import main

if __name__ == "__main__":
    main()
