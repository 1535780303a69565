"""The ``yujing`` commands, one module per job; ``pipelines/cli.py`` assembles them.

Modules import only the standard library and typer at the top: pandas, models,
Prefect and uvicorn are imported inside a command, after its arguments have
been checked, so ``yujing --help`` and a wrong argument answer in well under a
second.
"""
