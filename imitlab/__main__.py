from imitlab.cli import run

run()
