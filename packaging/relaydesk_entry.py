"""The packaged app's entry script: the ``relaydesk`` command, GUI and CLI in one executable.

It lives outside the ``engine`` package on purpose: PyInstaller puts the entry script's
folder on the import path, and ``engine/`` has modules (``secrets``, ``queues``) that
would then hide the standard library's modules of the same name.
"""

from desktop.cli import main

if __name__ == "__main__":
    main()
