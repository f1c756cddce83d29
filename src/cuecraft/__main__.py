from cuecraft.cli import run

# Guarded: a worker process may import this module; only ``python -m cuecraft`` runs the CLI.
if __name__ == "__main__":
    run()
