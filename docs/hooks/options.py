"""MkDocs hook: a line ``<!-- options: chunkrl.module.ConfigClass PREFIX -->`` in a page becomes the table of
that config dataclass's options (flag, default, the docstring written under the field), read from the code
when the site is built, so that the documented options and defaults cannot drift from the real ones."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap

MARKER = re.compile(r"<!-- options: (?P<target>[\w.]+)(?: (?P<prefix>[\w.-]+))? -->")


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of ``cls`` and of its base classes."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, following in zip(body, body[1:] + [None], strict=True):
            is_doc = isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
                docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def describe(value) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) if value else "(none)"
    return "None" if value is None else str(value)


def rows(cls, prefix: str) -> list[str]:
    docs, out, nested = field_docs(cls), [], []
    for field in dataclasses.fields(cls):
        flag = f"--{prefix + '.' if prefix else ''}{field.name.replace('_', '-')}"
        value = default_of(field)
        if dataclasses.is_dataclass(value):
            if prefix:  # a sub-section of an agent's options (e.g. --sac.act.*): listed below
                nested.append((type(value), f"{prefix}.{field.name.replace('_', '-')}"))
                out.append(f"| `{flag}.*` | see below | {docs.get(field.name, '')} |")
            else:  # an agent family's section of the run config: on that family's page
                out.append(f"| `{flag}.*` | see the method's page | {docs.get(field.name, '')} |")
            continue
        text = docs.get(field.name, "").replace("|", "\\|")
        out.append(f"| `{flag}` | `{describe(value)}` | {text} |")
    for klass, sub in nested:
        out += ["", f"**`--{sub}.*`** ({klass.__name__})", "", "| option | default | what it does |", "|---|---|---|"]
        out += rows(klass, sub)
    return out


def table(target: str, prefix: str) -> str:
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    header = ["| option | default | what it does |", "|---|---|---|"]
    return "\n".join(header + rows(cls, prefix))


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda m: table(m["target"], m["prefix"] or ""), markdown)
