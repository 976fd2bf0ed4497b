"""How far through its plan a run is, as a fraction, when a resumed run may change its length.

The cosine LR and the progressive-learning stages are both functions of that fraction. Read as
`x / end` they would move when `--resume RUN --epochs MORE` changes `end`: the LR would jump back
up the cosine and a stage boundary could pass behind the epoch already run (a smaller image size
again). So a changed length starts a new segment instead: from the point of the resume the
fraction continues from the value it had reached and spreads the rest over the new end. Nothing
already run moves, nothing goes back, and a run whose length never changes is one segment whose
fraction is exactly `x / end`.
"""

from __future__ import annotations

from dataclasses import dataclass

Segment = tuple[int, float, int]  # (first point, fraction there, end of the plan)


@dataclass(frozen=True)
class Progress:
    segments: tuple[Segment, ...]

    @classmethod
    def of(cls, end: int) -> Progress:
        return cls(((0, 0.0, end),))

    @property
    def end(self) -> int:
        return self.segments[-1][2]

    def __call__(self, x: int) -> float:
        start, done, end = next(
            (s for s in reversed(self.segments) if s[0] <= x), self.segments[0])
        return min(1.0, done + (1.0 - done) * (x - start) / max(1, end - start))

    def replanned(self, at: int, end: int) -> Progress:
        """The plan after a resume at point `at` changed its end to `end`."""
        if end == self.end:
            return self
        kept = tuple(s for s in self.segments if s[0] < at) or self.segments[:1]
        return Progress((*kept, (at, self(at), end)))

    def to_list(self) -> list[list]:
        return [[int(a), float(f), int(e)] for a, f, e in self.segments]

    @classmethod
    def from_list(cls, rows: list) -> Progress:
        return cls(tuple((int(a), float(f), int(e)) for a, f, e in rows))
