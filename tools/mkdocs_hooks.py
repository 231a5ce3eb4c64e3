"""MkDocs hooks: tell the package it is running inside a docs build."""

import os


def on_config(config, **kwargs):
    # llmnotes.plotting.svg() emits full inline SVG only during a build (see its docstring).
    os.environ["LLMNOTES_DOCS_BUILD"] = "1"
    return config
