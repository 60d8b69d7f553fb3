"""Small text and unit helpers shared by the other modules."""

#: The largest value of the WIT's `u32` milliseconds (~49 days).
_U32_MAX = 2**32 - 1


def tail_lines(text, n):
    """The last `n` lines of `text`, ignoring leading and trailing blank space."""
    lines = text.strip().splitlines()
    return "\n".join(lines[-n:]).strip() if n > 0 else ""


def display_argv(argv):
    """An argv as a person would type it: words quoted only where needed."""
    shown = []
    for arg in argv:
        if arg == "" or any(c.isspace() or c in "'\"" for c in arg):
            shown.append("'" + arg.replace("'", "'\\''") + "'")
        else:
            shown.append(arg)
    return " ".join(shown)


def seconds_to_ms(seconds):
    """Seconds (int or float) as the WIT's `u32` milliseconds, saturating."""
    if seconds is None:
        return None
    return max(0, min(_U32_MAX, int(seconds * 1000)))


def as_bytes(contents):
    """Text as UTF-8, bytes as they are."""
    if isinstance(contents, str):
        return contents.encode("utf-8")
    return bytes(contents)
