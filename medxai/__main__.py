"""``python -m medxai`` runs the command-line interface."""
from medxai.cli.main import run

run()
