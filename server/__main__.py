"""`python -m server`: serve with settings from the environment."""

from server.cli import main

if __name__ == "__main__":
    main(["serve"])
