"""`python -m server`: serve with settings from the environment."""

from server.startup import pause_gc

if __name__ == "__main__":
    pause_gc()  # before the imports: see server/startup.py
    from server.cli import main

    main(["serve"])
