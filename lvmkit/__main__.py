"""``python -m lvmkit`` (and ``torchrun ... -m lvmkit``): the command line."""

from lvmkit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
