"""``python -m evlog``: the same as the ``evlog`` command."""

from evlog.cli import main

if __name__ == "__main__":
    main()
