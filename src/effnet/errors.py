"""The one exception type that means "the user asked for something wrong"; the CLI prints its
message as a single line and exits 2 instead of showing a traceback."""


class UserError(Exception):
    pass
