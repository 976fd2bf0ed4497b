"""The one exception type that means "the user asked for something wrong"; the CLI prints its
message as a single line and exits 2 instead of showing a traceback. And the one warning type
effnet gives the user, which the CLI shows as one line (other libraries' warnings it hides)."""


class UserError(Exception):
    pass


class EffnetWarning(UserWarning):
    """Something effnet itself tells the user (a skipped image, a setting changed to fit weights)."""


def error_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most `limit`
    characters: libraries' messages can be pages long and a UserError is one line."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
