"""``python -m steerlab``: the same entry point as the ``steerlab`` console script."""

from steerlab.cli import main

if __name__ == "__main__":
    main()
