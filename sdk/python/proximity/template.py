"""Recipe assets: read at build time, filled with `{{name}}` placeholders at run time."""

import os

from .errors import InvalidInput


def asset(module_file, name):
    """The text of the file `name` beside `module_file` (pass `__file__`).

    Call it at module level: componentize-py runs the module's top level while
    it builds the component, where the recipe's directory is readable, and
    keeps the result in the component. At run time a recipe has no files.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(module_file)), name)
    with open(path, encoding="utf-8") as f:
        return f.read()


def render(template, values):
    """Replace every `{{name}}` in `template` with `values[name]`.

    One pass, so a value that itself contains `{{…}}` is never expanded. An
    unknown placeholder, or a value that no placeholder uses, is
    `InvalidInput`: either means the asset and the code drifted apart.
    """
    out = []
    used = set()
    rest = template
    while True:
        start = rest.find("{{")
        if start < 0:
            break
        out.append(rest[:start])
        end = rest.find("}}", start + 2)
        if end < 0:
            raise InvalidInput("template has an unclosed `{{`")
        name = rest[start + 2 : end].strip()
        if name not in values:
            raise InvalidInput(f"template placeholder `{name}` has no value")
        used.add(name)
        out.append(str(values[name]))
        rest = rest[end + 2 :]
    out.append(rest)
    unused = [n for n in values if n not in used]
    if unused:
        raise InvalidInput(f"template has no placeholder `{unused[0]}`")
    return "".join(out)
